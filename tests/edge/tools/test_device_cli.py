"""The device CLI: caption, info, bench and doctor on a machine without camera or Edge TPU."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from velm_edge.runtime.tokenizer import normalize
from velm_edge.synth import scenes
from velm_edge.tools import cli


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """20 held-out scenes written by the generator, alternately PNG and JPEG, with their captions."""
    out = tmp_path_factory.mktemp("scenes")
    files = []
    for i in range(20):
        img, caption = scenes.generate(2_000_000_100 + i, scenes.SceneConfig(size=80))
        ext = ("png", "jpg")[i % 2]
        path = out / f"scene{i}.{ext}"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else [])
        files.append((str(path), caption))
    return files


def run(*args):
    return subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_caption_prints_the_right_captions_for_generated_png_and_jpeg(scene_files, captioner, capsys):
    assert cli.main(["caption", "--bundle", "shapes", *(p for p, _ in scene_files)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(scene_files)
    right = 0
    for line, (path, truth) in zip(lines, scene_files):
        path_out, text = line.split(": ", 1)
        assert path_out == path
        assert text == captioner.caption(cv2.imread(path)).text  # the CLI adds nothing of its own
        right += normalize(text) == normalize(truth)
    assert right >= 0.8 * len(scene_files)  # the bundle's exact match is 0.92 on such scenes


def test_caption_json_lines_and_a_16_bit_image(scene_files, tmp_path, capsys):
    img = cv2.imread(scene_files[0][0]).astype(np.uint16) * 257
    path16 = tmp_path / "deep.png"
    cv2.imwrite(str(path16), img)
    assert cv2.imread(str(path16), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    args = ["--bundle", "shapes", "--json", "--beam_size", "3", scene_files[0][0], str(path16)]
    assert cli.main(["caption", *args]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["image"] for r in rows] == [scene_files[0][0], str(path16)]
    assert rows[0]["text"] == rows[1]["text"] and rows[0]["complete"] is True
    assert set(rows[0]) == {"image", "text", "tokens", "score", "confidence", "tags", "detections", "complete",
                            "timings_ms", "recognised"}


def test_unreadable_files_are_reported_and_the_rest_still_captioned(scene_files, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    code = cli.main(["caption", "--bundle", "shapes", str(tmp_path / "missing.jpg"), str(junk), scene_files[0][0]])
    out, err = capsys.readouterr()
    assert code == 1
    assert "missing.jpg: cannot read: No such file or directory" in err
    assert "junk.png: not an image file OpenCV can decode" in err
    assert out.startswith(scene_files[0][0] + ": ")


def test_a_bad_bundle_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["caption", "--bundle", str(tmp_path), "x.png"]) == 1
    assert "velm-edge caption: error: " in capsys.readouterr().err


def test_info_reports_graphs_sizes_and_figures():
    out = run("info", "shapes")  # a shipped bundle by name
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "int8" in text and "80x80 RGB" in text and "CONV_2D" in text and "FULLY_CONNECTED" in text
    assert "exact match" in text and "not compiled for the Edge TPU" in text
    photo = run("info")  # the default: the photo bundle, with what it was trained on and its terms
    assert photo.returncode == 0, photo.stderr[-2000:]
    assert "224x224 RGB" in photo.stdout and "DEPTHWISE_CONV_2D" in photo.stdout and "MEAN" in photo.stdout
    assert "trained on Flickr8k" in photo.stdout and "research only" in photo.stdout
    assert "EfficientNet-Lite0" in photo.stdout and "decoding   beam search 3" in photo.stdout
    report = json.loads(run("info", "shapes", "--json").stdout)
    assert report["graphs"]["language"]["outputs"]["logits"]["shape"] == [1, report["vocab_size"]]
    assert report["total_bytes"] == sum(report["files"].values())


def test_doctor_runs_without_camera_or_edge_tpu_and_says_so():
    out = run("doctor", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    findings = {f["topic"]: f for f in json.loads(out.stdout)}
    assert findings["interpreter"]["status"] == "ok"
    assert findings["photo bundle"]["status"] == "ok" and findings["shapes bundle"]["status"] == "ok"
    assert "(the default)" in findings["photo bundle"]["detail"]
    assert "no Coral" in findings["edgetpu devices"]["detail"] or findings["edgetpu devices"]["status"] == "ok"
    assert "cameras" in findings and "opencv" in findings


def test_bench_prints_every_stage(capsys):
    assert cli.main(["bench", "--images", "4", "--cold_runs", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["result"]
    for stage in ("preprocess", "vision", "decode_step", "decode_invoke", "decode", "caption", "interpreter", "glue",
                  "python_glue"):
        assert r[stage]["median"] > 0 and r[stage]["p95"] >= r[stage]["median"]
    assert r["decode_invoke"]["median"] < r["decode_step"]["median"]  # the interpreter's part of a step
    assert 0 < r["glue_share"] < 1 and r["cold_start"]["peak_rss_mb"] > 10
    assert r["threads"]["language"] == 1 and r["threads"]["vision"] >= 1  # placed per graph (RuntimeOptions)


def test_bench_sweeps_the_thread_counts_of_both_graphs(capsys):
    assert cli.main(["bench", "shapes", "--images", "3", "--sweep-threads", "1,2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["vision_threads"], r["language_threads"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(r["vision"] > 0 and r["decode"] > 0 and r["caption"] >= r["vision"] for r in rows)
    assert run("bench", "--sweep-threads", "0,2").returncode == 2  # refused with a message, not a traceback


def test_help_explains_every_command():
    for command in ("caption", "info", "bench", "doctor", "synth"):
        out = run(command, "--help")
        assert out.returncode == 0 and "usage: velm-edge " + command in out.stdout
