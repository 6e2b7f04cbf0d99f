"""The device examples run as written (those that need no camera): image, overlay, callback, kiosk, systemd."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from velm_edge.live.sources import open_source
from velm_edge.runtime.tokenizer import normalize

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def example(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(EXAMPLES / args[0]), *args[1:]] if args[0].endswith(".py") else \
        ["bash", str(EXAMPLES / args[0]), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "BIN": str(BIN), **env})


def test_caption_image_prints_the_captioners_caption_for_each_file(tmp_path, captioner):
    made = subprocess.run([str(BIN / "velm-edge"), "synth", "--out", str(tmp_path), "--count", "3",
                           "--seed", "2000000100", "--size", "160"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    images = sorted(str(p) for p in tmp_path.glob("scene_*.png"))
    run = example("caption_image.py", *images, "--bundle", "shapes")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 3
    for path, line in zip(images, lines):
        expected = captioner.caption(cv2.imread(path, cv2.IMREAD_UNCHANGED)).text
        pattern = rf"{re.escape(path)}: {re.escape(expected)}  \(confidence [01]\.\d\d, \d+\.\d ms\)"
        assert re.fullmatch(pattern, line), line
    cat = example("caption_image.py", str(ROOT / "velm_edge" / "samples" / "cat.jpg"))  # the photo bundle: its tags
    assert cat.returncode == 0 and re.search(r"\[\('cat', 0\.\d+\)\]$", cat.stdout.strip()), cat.stdout
    missing = example("caption_image.py", str(tmp_path / "nope.jpg"), images[0], "--bundle", "shapes")
    assert missing.returncode == 1 and "nope.jpg: cannot read: No such file or directory" in missing.stderr
    assert images[0] in missing.stdout  # the good file after the bad one is still captioned


def test_camera_overlay_writes_a_captioned_video_on_the_synthetic_camera(tmp_path):
    out = tmp_path / "overlay.mp4"
    run = example("camera_overlay.py", "synth:?size=320&fps=100", "--save", str(out), "--frames", "12")
    assert run.returncode == 0, run.stderr[-2000:]
    captions = re.findall(r"^frame (\d+): (.+)$", run.stdout, re.M)
    assert len(captions) == 12 and all(text.strip() for _, text in captions)
    with open_source(str(out)) as video:
        frames = [f.image for f in iter(video.read, None)]
    assert len(frames) == 12 and frames[0].shape == (320, 320, 3)
    # the caption band darkens the bottom rows of the picture
    assert frames[0][-10:].mean() < frames[0][:-40].mean()


def test_camera_overlay_without_a_gui_says_what_to_do():
    gui = cv2.getBuildInformation().split("GUI:", 1)[1].split()[0]
    if gui != "NONE":
        pytest.skip("this OpenCV has a GUI")
    run = example("camera_overlay.py", "synth:", "--frames", "1")
    assert run.returncode == 2 and "opencv-python" in run.stderr and "--save" in run.stderr


def test_callback_example_receives_captions_while_pushing(tmp_path):
    run = example("callback.py", "--seconds", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    events = re.findall(r"^frame +(\d+): '(.+)' \(\d+\.\d ms, (\d+) frames dropped so far\)$", run.stdout, re.M)
    assert len(events) >= 10, run.stdout[-1000:]
    frames = [int(f) for f, _, _ in events]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)


def test_kiosk_launcher_serves_live_captions_and_stops(free_port, wait_for_http):
    proc = subprocess.Popen(["bash", str(EXAMPLES / "kiosk.sh"), "synth:"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "BIN": str(BIN), "BROWSER": "none", "DURATION": "6",
                                 "PORT": str(free_port)})
    try:
        url = f"http://127.0.0.1:{free_port}/latest.json"
        wait_for_http(url, lambda body: bool((json.loads(body) or {}).get("text")))  # null until the first caption
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert f"kiosk page: http://127.0.0.1:{free_port}/" in out


def _exec_start(unit: str) -> list[str]:
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_systemd_unit_verifies_and_its_command_runs(tmp_path):
    unit = (EXAMPLES / "velm-edge.service").read_text()
    assert "Restart=on-failure" in unit
    argv = _exec_start(unit)
    assert argv[0].endswith("/velm-edge") and argv[1] == "run"
    local = unit.replace(argv[0], str(BIN / "velm-edge"))
    if shutil.which("systemd-analyze"):
        (tmp_path / "velm-edge.service").write_text(local)
        verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "velm-edge.service")],
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0 and "velm-edge.service" not in verify.stderr, verify.stderr
    # the same command line, with the camera swapped for the synthetic one and the paths for temporary ones
    log = tmp_path / "captions.jsonl"
    cmd = [str(BIN / "velm-edge"), *argv[1:]]
    cmd[2] = "synth:?fps=30"
    cmd = [re.sub(r"^jsonl:.*", f"jsonl:{log}", a) for a in cmd]
    cmd = [re.sub(r"^kiosk:127\.0\.0\.1:8080$", "kiosk:127.0.0.1:0", a) for a in cmd]
    run = subprocess.run([*cmd, "--duration", "4"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert events and all(normalize(e["text"]) for e in events)
