"""The speak sink (a stand-in espeak-ng on PATH records what it is asked to say) and the MQTT sink (a real
mosquitto broker on loopback, a real subscriber)."""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from velm_edge.live import pipeline
from velm_edge.live.options import LiveOptions
from velm_edge.live.sources import SynthSource
from velm_edge.sinks.base import Sink
from velm_edge.sinks.kinds import open_sink


def test_speak_reads_out_only_steady_captions(captioner, tmp_path, monkeypatch):
    log = tmp_path / "said.txt"
    fake = tmp_path / "bin" / "espeak-ng"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nshift\necho "$@" >> {log}\n')  # drops the "--" separator, records the text
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    sink = open_sink("speak")
    events = []

    class Record(Sink):
        def write(self, e):
            events.append(e.text)

    pipeline.run(SynthSource(fps=30, size=80, seed=6, hold_s=1.0, frames=90), captioner, [sink, Record()])
    said = log.read_text().splitlines()
    assert said == sink.spoken and 2 <= len(said) <= 4  # three scenes, each spoken once when steady
    for text in said:  # each spoken caption was the result three times in a row
        runs = [events[i:i + 3] for i in range(len(events) - 2)]
        assert [text] * 3 in runs


def test_speak_without_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match="apt install espeak-ng"):
        open_sink("speak")


@pytest.fixture
def broker(tmp_path, free_port):
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        pytest.skip("mosquitto is not installed")
    port = free_port
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(5)


def test_mqtt_sink_publishes_every_caption_to_a_real_broker(captioner, broker):
    import paho.mqtt.client as mqtt

    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.connect("127.0.0.1", broker)
    sub.subscribe("kiosks/lobby/captions")
    sub.loop_start()
    time.sleep(0.5)
    sink = open_sink(f"mqtt://127.0.0.1:{broker}/kiosks/lobby/captions")
    counts = pipeline.run(SynthSource(fps=30, size=80, frames=30), captioner, [sink], LiveOptions(max_frames=20))
    deadline = time.monotonic() + 5
    while len(got) < counts["captions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.loop_stop()
    assert counts["captions"] == 20 and len(got) == 20
    assert all("text" in m and "frame_age_ms" in m for m in got)


def test_mqtt_urls_are_checked():
    with pytest.raises(ValueError, match="expected mqtt://HOST"):
        open_sink("mqtt://broker-without-topic")
