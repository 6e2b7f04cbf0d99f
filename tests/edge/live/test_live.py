"""Live captions: sources, the latest-frame reader, the pipeline, JSONL and `velm-edge run`."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from velm_edge.errors import OptionError, SourceError
from velm_edge.live import pipeline
from velm_edge.live.events import CaptionEvent
from velm_edge.live.options import LiveOptions
from velm_edge.live.reader import LatestFrameReader
from velm_edge.live.sources import ImagesSource, OpenCVSource, SynthSource, open_source
from velm_edge.sinks.jsonl import JsonlSink
from velm_edge.sinks.kinds import open_sink
from velm_edge.synth import scenes
from velm_edge.testing.faults import ScriptedSource
from velm_edge.testing.waiting import wait_until


def test_synth_through_the_pipeline_to_jsonl_matches_the_ground_truth(captioner, tmp_path):
    out = tmp_path / "live.jsonl"
    source = SynthSource(fps=30, size=80, seed=3, hold_s=1.0, frames=60)
    counts = pipeline.run(source, captioner, [JsonlSink(str(out))])
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert counts["captions"] == len(events) > 0
    assert all(e["truth"] for e in events) and all(e["frame_age_ms"] >= e["latency_ms"] > 0 for e in events)
    assert [e["frame"] for e in events] == sorted({e["frame"] for e in events})
    assert np.mean([e["correct"] for e in events]) >= 0.75  # the bundle's exact match is 0.92 on such scenes
    assert len({e["truth"] for e in events}) >= 2  # the scene changed while it was captioned


def test_the_reader_keeps_only_the_newest_frame_of_a_live_source():
    reader = LatestFrameReader(SynthSource(fps=500, size=64, frames=300)).start()
    taken = []
    while not reader.ended:
        frame = reader.get(timeout=0.5)
        if frame is not None:
            taken.append(frame.index)
            time.sleep(0.02)  # a slow captioner
    reader.stop()
    assert reader.dropped > 0 and len(taken) + reader.dropped == reader.read_count == 300
    assert taken == sorted(taken) and taken[-1] == 299  # the newest frame is always the one handed over


def test_a_video_file_is_captioned_frame_by_frame_and_ends(captioner, tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    truths = []
    for i in range(12):
        img, truth = scenes.generate(2_000_000_300 + i // 4, scenes.SceneConfig(size=120))
        writer.write(cv2.resize(img, (160, 120)))
        truths.append(truth)
    writer.release()
    source = open_source(path)
    assert isinstance(source, OpenCVSource) and not source.live
    events = list(pipeline.captions(source, captioner))
    assert [e.frame for e in events] == list(range(12))  # a file is not live: no frame is dropped


def test_an_image_folder_is_captioned_in_name_order(captioner, tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), scenes.generate(2_000_000_400 + i, scenes.SceneConfig(size=80))[0])
    (tmp_path / "notes.txt").write_text("not an image")
    events = list(pipeline.captions(open_source(str(tmp_path)), captioner))
    assert [os.path.basename(e.image) for e in events] == ["img0.png", "img1.png", "img2.png"]
    assert isinstance(open_source(str(tmp_path / "*.png")), ImagesSource)


def test_overlapping_vision_and_decoding_gives_the_same_captions(captioner, tmp_path):
    """With the next frame's vision graph on a second thread: the same captions of the same frames, in order;
    malformed frames still counted; the worker's error reaches the caller."""
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"img{i:02d}.png"), scenes.generate(2_000_000_500 + i,
                                                                       scenes.SceneConfig(size=80))[0])
    runs = {o: list(pipeline.captions(open_source(str(tmp_path)), captioner, LiveOptions(overlap=o)))
            for o in (False, True)}
    assert [(e.image, e.text, e.tokens) for e in runs[True]] == \
        [(e.image, e.text, e.tokens) for e in runs[False]]
    assert len(runs[True]) == 12 and all(e.text for e in runs[True])

    class Frames(SynthSource):  # not live: every frame is handed over; frame 3 is refused by preprocessing
        live = False

        def read(self):
            frame = super().read()
            if frame is not None and frame.index == 3:
                return dataclasses.replace(frame, image=np.full((80, 80, 3), 2.0, np.float32))  # floats above 1
            return frame

    events = list(pipeline.captions(Frames(size=80, frames=8, realtime=False), captioner, LiveOptions(overlap=True)))
    assert [e.frame for e in events] == [0, 1, 2, 4, 5, 6, 7] and events[-1].bad_frames == 1

    class Failing:  # a captioner whose vision half breaks on the third frame: the caller gets the error
        def __init__(self):
            self.calls = 0

        def encode_frame(self, image, earlier=None):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("the vision graph failed")
            return captioner.encode_frame(image, earlier=earlier)

        def decode_encoded(self, encoded):
            return captioner.decode_encoded(encoded)

    with pytest.raises(RuntimeError, match="vision graph failed"):
        list(pipeline.captions(Frames(size=80, frames=8, realtime=False), Failing(), LiveOptions(overlap=True)))


def test_source_and_sink_names_are_checked():
    with pytest.raises(SourceError, match="not a camera index"):
        open_source("no/such/thing.mp4")
    with pytest.raises(OptionError, match="unknown option colour; known: fps, size, seed, hold_s, frames, render"):
        open_source("synth:?colour=red")
    with pytest.raises(ValueError, match="synth: needs size >= 32, render >= 32"):
        open_source("synth:?size=8")
    with pytest.raises(OptionError, match="unknown sink 'screen'; sinks: print; jsonl"):
        open_sink("screen")
    with pytest.raises(OptionError, match="the window sink takes nothing after its name"):
        open_sink("window:2")
    with pytest.raises(OptionError, match="the jsonl sink needs a target"):
        open_sink("jsonl:")
    with pytest.raises(SourceError, match="could not open"):
        OpenCVSource("/dev/video99").open()


def test_the_embedding_api_yields_events():
    events = list(pipeline.live_captions("synth:?fps=60&size=80&frames=10", live=LiveOptions(max_frames=3)))
    assert len(events) == 3 and {"text", "frame_age_ms", "truth", "correct", "dropped"} <= set(events[0].to_json())


def test_sigterm_stops_cleanly_with_every_jsonl_line_whole(tmp_path):
    out = tmp_path / "run.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "run", "synth:?fps=30&size=80",
                             "--sink", f"jsonl:{out}", "--sink", "print"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert proc.returncode == 0, err[-2000:]
    lines = out.read_text().splitlines()
    assert len(lines) >= 10 and all(json.loads(line)["text"] for line in lines)
    assert "captions" in err


@pytest.mark.skipif(bool(__import__("glob").glob("/dev/video*")), reason="this machine has a camera")
def test_no_source_and_no_camera_suggests_synth():
    out = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "run"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "no camera found" in out.stderr and "velm-edge run synth:" in out.stderr


def test_the_stabilizer_needs_n_in_a_row_and_ignores_flicker():
    from velm_edge.live.events import Stabilizer

    s = Stabilizer(hold=3)
    announced = [s.update(t) for t in ["a", "a", "a", "b", "a", "b", "a", "b", "b", "b", "B."]]
    assert announced == [False, False, True, False, False, False, False, False, False, True, False]
    assert s.current == "b"  # "B." is the same caption after normalization


def test_the_gate_skips_unchanged_frames_and_still_captions_periodically():
    from velm_edge.live.scene_gate import SceneGate

    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (120, 160, 3), dtype=np.uint8)
    gate = SceneGate(threshold=4.0, max_interval_s=1.0)
    noisy = lambda: np.clip(base + rng.integers(0, 3, base.shape), 0, 255).astype(np.uint8)  # noqa: E731
    assert gate.changed(base, 0.0)
    assert not gate.changed(noisy(), 0.1) and not gate.changed(noisy(), 0.5)
    assert gate.changed(255 - base, 0.6)  # a new scene
    assert gate.changed(255 - base, 1.7)  # nothing changed, but max_interval_s passed
    assert gate.skipped == 2


def test_run_with_gate_and_stabilizer_announces_each_scene_once(tmp_path):
    out = tmp_path / "stable.jsonl"
    run = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "run",
                          "synth:?fps=30&size=80&hold_s=1&frames=90",
                          "--stable", "3", "--gate", "1", "--sink", f"jsonl:{out}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    texts = [e["text"] for e in events]
    assert 2 <= len(events) <= 6 and all(a != b for a, b in zip(texts, texts[1:]))  # 3 scenes, no repeats


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_have_one_cue_per_caption_change(tmp_path, fmt):
    import re

    sink = open_sink(f"{fmt}:{tmp_path}/subs.{fmt}").start()
    for t, text in [(10.0, "a red circle"), (10.5, "a red circle"), (11.25, "two blue stars"), (73.0, "a cross")]:
        sink.write(CaptionEvent(text=text, tokens=(), score=0.0, complete=True, frame=0, captured=t, frame_age_ms=0.0,
                                latency_ms=0.0))
    sink.stop()
    body = (tmp_path / f"subs.{fmt}").read_text()
    sep = "," if fmt == "srt" else r"\."
    stamps = re.findall(rf"(\d\d:\d\d:\d\d{sep}\d\d\d) --> (\d\d:\d\d:\d\d{sep}\d\d\d)\n(.+)\n", body)
    times = [(a.replace(",", "."), b.replace(",", "."), t) for a, b, t in stamps]
    assert times == [("00:00:00.000", "00:00:01.250", "a red circle"),
                     ("00:00:01.250", "00:01:03.000", "two blue stars"),
                     ("00:01:03.000", "00:01:05.000", "a cross")]
    assert body.startswith("WEBVTT\n\n") if fmt == "vtt" else body.startswith("1\n00:00:00,000 --> ")


def test_failures_stalls_and_garbage_are_survived(captioner):
    import threading

    source = ScriptedSource(SynthSource(fps=1000, size=64, realtime=False),
                            ["ok"] * 5 + ["fail", "fail"] + ["ok"] * 5 + ["garbage"] * 3 + ["ok"] * 5 + ["stall"]
                            + ["ok"] * 5)
    threads_before = threading.active_count()
    reader = LatestFrameReader(source, stall_s=0.5, max_backoff_s=0.2)
    events = list(pipeline.captions(source, captioner, reader=reader))
    assert reader.reconnects == 3 and "stalled" in reader.last_fault  # two failures, one stall
    assert source.opens == 4 and len(events) >= 5 and reader.error is None
    wait_until(lambda: threading.active_count() <= threads_before, 10, "the abandoned stalled reader thread to exit")


def test_video_sink_burns_the_captions_in(captioner, tmp_path):
    path = tmp_path / "out.avi"
    source = SynthSource(fps=30, size=96, seed=2, frames=30)
    counts = pipeline.run(source, captioner, [open_sink(f"video:{path}?fps=30")])
    with open_source(str(path)) as video:
        frames = [f.image for f in iter(video.read, None)]
    assert len(frames) == 30 and counts["captions"] > 0
    raw = SynthSource(fps=30, size=96, seed=2, realtime=False)
    plain = [raw.read().image for _ in range(30)]
    band = slice(80, 96)  # the caption band at the bottom is darkened and carries text
    assert frames[-1][band].mean() < plain[-1][band].mean() - 20
    assert np.abs(frames[-1][:60].astype(int) - plain[-1][:60]).mean() < 12  # the picture itself is kept


def test_window_sink_says_what_to_install_on_a_headless_opencv():
    gui = cv2.getBuildInformation().split("GUI:", 1)
    if len(gui) == 2 and gui[1].split()[0] != "NONE":
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(ValueError, match="needs an OpenCV build with a GUI: pip install opencv-python"):
        open_sink("window")


def test_an_http_mjpeg_stream_is_a_source(free_port, wait_for_http, run_to_jsonl):
    """One velm-edge serves its kiosk preview; a second one captions that stream over HTTP (OpenCV's FFmpeg)."""
    server = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "run", "synth:?fps=15&seed=8",
                               "--sink", f"kiosk:127.0.0.1:{free_port}", "--duration", "60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{free_port}/health")
        events = run_to_jsonl(f"http://127.0.0.1:{free_port}/stream.mjpg", 10, "--bundle", "shapes")
    finally:
        server.terminate()
        server.wait(10)
    assert len(events) == 10 and all(e["text"] for e in events)


def _gst_rtsp_available() -> bool:
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    try:
        return subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _gst_rtsp_available(), reason="Debian's python3-gi + gir1.2-gst-rtsp-server-1.0 missing")
def test_an_rtsp_stream_from_a_real_server_on_loopback(tmp_path, free_port, run_to_jsonl, captioner):
    from pathlib import Path

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 15, (160, 160))
    truths = set()  # what each scene shows, and what the model says of it after the stream's JPEG coding
    for i in range(45):  # three scenes, 1 s each, rendered at the model's size and enlarged
        img, truth = scenes.generate(2_000_000_500 + i // 15, scenes.SceneConfig(size=80))
        frame = cv2.resize(img, (160, 160), interpolation=cv2.INTER_NEAREST)
        writer.write(frame)
        coded = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
        truths |= {truth, captioner.caption(coded).text}
    writer.release()
    server_script = Path(__file__).resolve().parents[2] / "servers" / "rtsp_server.py"
    server = subprocess.Popen(["/usr/bin/python3", str(server_script), str(free_port), str(clip)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        events = run_to_jsonl(f"rtsp://127.0.0.1:{free_port}/live", 20, "--bundle", "shapes")  # synthetic scenes
    finally:
        server.terminate()
        server.wait(10)
    from velm_edge.runtime.tokenizer import normalize

    right = [any(normalize(e["text"]) == normalize(t) for t in truths) for e in events]
    assert len(events) == 20 and np.mean(right) >= 0.8  # RTP/JPEG over loopback still gives the scenes' captions


def test_push_frames_and_receive_captions_through_a_callback(shapes_bundle, held_out):
    import threading

    from velm_edge.live.push import PushCaptioner

    got, done = [], threading.Event()

    def on_caption(event):
        got.append(event)
        if len(got) >= 5:
            done.set()

    with PushCaptioner(on_caption, shapes_bundle) as cap:
        for i, (img, _) in enumerate(held_out[:40]):
            if i % 4 == 0:
                cap.push(np.zeros((0, 3), np.uint8))  # malformed frames are skipped and counted
                time.sleep(0.02)
            cap.push(img)
            time.sleep(0.02)
            if done.is_set():
                break
        assert done.wait(10)
    assert all(e.text for e in got) and [e.frame for e in got] == sorted(e.frame for e in got)
    assert max(e.bad_frames for e in got) >= 1


def test_detect_every_n_runs_the_detector_on_every_nth_frame_and_keeps_its_objects_between(tmp_path):
    from velm_edge import samples
    from velm_edge.runtime.captioner import Captioner

    astronaut = next(p for p in samples.paths() if p.stem == "astronaut")
    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes(astronaut.read_bytes())
    with Captioner.open("photo") as cap:
        events = list(pipeline.captions(open_source(str(tmp_path)), cap, LiveOptions(detect_every=3)))
        runs = cap.detector_graph.invokes  # the sequential path: this thread's graphs
    assert len(events) == 6 and runs == 2
    assert all(e.detections and e.detections[0].label == "person" for e in events)
    assert all(e.to_json()["detections"][0]["box"] == list(events[0].detections[0].box) for e in events)
