"""The speak sink (a stand-in espeak-ng on PATH records what it is asked to say) and the MQTT sink (a real
mosquitto broker on loopback, a real subscriber)."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from velm_edge.errors import OptionError
from velm_edge.live import pipeline
from velm_edge.live.options import LiveOptions
from velm_edge.live.sources import SynthSource
from velm_edge.sinks.base import Sink
from velm_edge.sinks.kinds import open_sink
from velm_edge.testing.waiting import wait_until


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


def _mosquitto(port: int, conf_dir) -> subprocess.Popen:
    """A mosquitto listening on loopback ``port``, once it accepts connections (skip if not installed)."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        pytest.skip("mosquitto is not installed")
    conf = conf_dir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("mosquitto did not start")


@pytest.fixture
def broker_process(tmp_path, free_port):
    """A mosquitto on loopback: (port, its process)."""
    proc = _mosquitto(free_port, tmp_path)
    yield free_port, proc
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def broker(broker_process):
    return broker_process[0]


def test_mqtt_sink_publishes_every_caption_to_a_real_broker(captioner, broker):
    import paho.mqtt.client as mqtt

    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    subscribed = []
    sub.on_subscribe = lambda *_: subscribed.append(True)
    sub.connect("127.0.0.1", broker)
    sub.subscribe("kiosks/lobby/captions")
    sub.loop_start()
    wait_until(lambda: subscribed, 5, "the broker to confirm the subscription")
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


def _subscriber(port: int, topics: list[str]):
    import paho.mqtt.client as mqtt

    got: list[tuple[str, bytes, bool]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append((m.topic, m.payload, bool(m.retain)))
    sub.connect("127.0.0.1", port)
    for t in topics:
        sub.subscribe(t, qos=1)
    sub.loop_start()
    return sub, got


def _wait(got, predicate, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hits = [m for m in list(got) if predicate(m)]
        if hits:
            return hits
        time.sleep(0.05)
    raise AssertionError(f"not received within {seconds} s; got {[(t, p[:80]) for t, p, _ in got][:10]}")


def check_home_assistant_sensor_config(config: dict) -> None:
    """The keys and types Home Assistant's MQTT sensor and device schemas document (those we send)."""
    strings = ("name", "unique_id", "object_id", "state_topic", "value_template", "json_attributes_topic",
               "json_attributes_template", "availability_topic", "payload_available", "payload_not_available",
               "icon")
    for key in strings:
        assert isinstance(config[key], str) and config[key], key
    assert set(config) <= {*strings, "device"}, set(config) - {*strings, "device"}
    device = config["device"]
    assert isinstance(device["identifiers"], list) and all(isinstance(i, str) and i for i in device["identifiers"])
    for key in ("name", "manufacturer", "model", "sw_version"):
        assert isinstance(device[key], str) and device[key], key
    assert config["icon"].startswith("mdi:") and "value_json.text" in config["value_template"]


def test_home_assistant_discovery_and_the_last_will_on_a_real_broker(broker):
    topic = "velm/lobby"
    sub, got = _subscriber(broker, ["homeassistant/#", f"{topic}/#", topic])
    url = f"mqtt://127.0.0.1:{broker}/{topic}?discovery=homeassistant&client_id=lobby&name=Lobby camera"
    proc = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "run", "synth:?fps=15&size=80",
                             "--bundle", "shapes", "--sink", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (config_msg,) = _wait(got, lambda m: m[0] == "homeassistant/sensor/lobby/caption/config")[:1]
        config = json.loads(config_msg[1])
        check_home_assistant_sensor_config(config)
        assert config["state_topic"] == topic and config["availability_topic"] == f"{topic}/availability"
        assert config["unique_id"] == "lobby_caption" and config["device"]["name"] == "Lobby camera"
        _wait(got, lambda m: m[0] == f"{topic}/availability" and m[1] == b"online")
        caption = json.loads(_wait(got, lambda m: m[0] == topic)[0][1])
        assert caption["text"] and "truth" in caption  # the state the sensor's value_template reads
        # every field the attributes template reads is in the message (confidence and tags among them)
        used = set(re.findall(r"value_json\.(\w+)", config["json_attributes_template"]))
        assert {"confidence", "tags"} <= used and used <= set(caption), used - set(caption)
        got.clear()
        proc.kill()  # SIGKILL: no goodbye; the broker publishes the last will
        proc.wait(10)
        _wait(got, lambda m: m[0] == f"{topic}/availability" and m[1] == b"offline", seconds=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # a new subscriber finds the retained config and the retained "offline" (Home Assistant after a restart)
    late, seen = _subscriber(broker, ["homeassistant/#", f"{topic}/availability"])
    _wait(seen, lambda m: m[0].endswith("/config") and m[2])
    _wait(seen, lambda m: m[0] == f"{topic}/availability" and m[1] == b"offline" and m[2])
    late.loop_stop()
    sub.loop_stop()


def test_a_clean_stop_says_offline_itself(captioner, broker):
    topic = "velm/door"
    sub, got = _subscriber(broker, [f"{topic}/availability"])
    sink = open_sink(f"mqtt://127.0.0.1:{broker}/{topic}?discovery=homeassistant")
    pipeline.run(SynthSource(fps=30, size=80, frames=10), captioner, [sink], LiveOptions(max_frames=5))
    _wait(got, lambda m: m[1] == b"online")
    _wait(got, lambda m: m[1] == b"offline")
    sub.loop_stop()
    with pytest.raises(OptionError, match="discovery must be a topic prefix"):
        open_sink(f"mqtt://127.0.0.1:{broker}/{topic}?discovery=home assistant!")


class _Event:
    def __init__(self, n: int):
        self.n = n

    def to_json(self) -> dict:
        return {"text": f"caption {self.n}", "frame": self.n}


@pytest.mark.parametrize("qos", [0, 1])
def test_after_a_broker_outage_it_announces_again_and_drops_stale_captions(broker_process, tmp_path, qos):
    broker, first = broker_process
    topic = f"outage/q{qos}"
    sink = open_sink(f"mqtt://127.0.0.1:{broker}/{topic}?discovery=homeassistant&client_id=out{qos}&qos={qos}")
    sink.start()
    try:
        deadline = time.monotonic() + 10
        while not sink.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        sink.write(_Event(0))
        # the outage: the broker goes (its retained messages with it: no persistence) and comes back
        first.terminate()
        first.wait(5)
        deadline = time.monotonic() + 10
        while sink.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        for n in range(1, 102):  # 101 captions while the broker is away
            sink.write(_Event(n))
            time.sleep(0.01)
        proc = _mosquitto(broker, tmp_path)
        try:
            sub, got = _subscriber(broker, ["homeassistant/#", f"{topic}/availability", topic])
            assert _wait(got, lambda m: m[0] == f"{topic}/availability" and m[1] == b"online", 20)
            assert _wait(got, lambda m: m[0].startswith("homeassistant/") and m[0].endswith("/config"), 5)
            sink.write(_Event(200))
            _wait(got, lambda m: m[0] == topic and json.loads(m[1])["frame"] == 200, 5)
            frames = [json.loads(p)["frame"] for t, p, _ in got if t == topic]
            assert [f for f in frames if f < 200] in ([], [101]), frames  # at most the newest, never the backlog
            sub.loop_stop()
        finally:
            t0 = time.monotonic()
            sink.stop()
            assert time.monotonic() - t0 < 3
            sink = None
            proc.terminate()
            proc.wait(5)
    finally:
        if sink is not None:
            sink.stop()


def test_stop_is_bounded_when_the_broker_never_answers():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port, held = server.getsockname()[1], []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    sink = open_sink(f"mqtt://127.0.0.1:{port}/mute?qos=1&discovery=homeassistant").start()
    try:
        wait_until(lambda: held, 5, "the sink's TCP connection")  # connected by TCP, never a CONNACK
        for n in range(20):
            sink.write(_Event(n))
        t0 = time.monotonic()
        sink.stop()
        assert time.monotonic() - t0 < 3
    finally:
        for conn, _ in held:
            conn.close()
        server.close()
