"""systemd integration: READY, watchdog pings that follow processed frames (not a timer), STOPPING."""

import os
import socket
import subprocess
import sys
import threading
import time

from velm_edge.live import pipeline
from velm_edge.live.options import LiveOptions
from velm_edge.live.reader import LatestFrameReader
from velm_edge.live.sources import SynthSource
from velm_edge.live.systemd import Notifier
from velm_edge.testing.faults import Fault, FaultySource


class Listener:
    """A stand-in for systemd's notification socket, read as messages arrive (as systemd does)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                if self.done.is_set():  # the sender had finished and nothing more is queued
                    return

    def messages(self) -> list[tuple[float, str]]:
        """Everything sent, once the sender has finished: what is queued is read, then the reader stops."""
        self.done.set()
        self.thread.join()
        self.sock.close()
        return self.got


def test_velm_edge_run_notifies_systemd(tmp_path):
    listener = Listener(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    run = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "run", "synth:?fps=30", "--duration", "3",
                          "--sink", f"jsonl:{tmp_path / 'c.jsonl'}"], env=env, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    messages = [m for _, m in listener.messages()]
    assert messages[0].startswith("READY=1\nSTATUS=captioning synth:")
    assert messages[-1] == "STOPPING=1"
    pings = messages.count("WATCHDOG=1")
    assert 10 <= pings <= 3 / 0.1 + 2  # every 0.1 s (a quarter of 0.4 s) while frames flow, no more


def test_watchdog_pings_stop_while_no_frame_is_processed(tmp_path, captioner):
    listener = Listener(tmp_path / "notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
    source = FaultySource(SynthSource(fps=60, size=64), [Fault(1.0, "stall", 1.5)])
    reader = LatestFrameReader(source, stall_s=10)  # the stall is waited out, not reconnected
    t0 = time.monotonic()
    live = LiveOptions(duration_s=3.5)
    for _ in pipeline.captions(source, captioner, live, reader=reader, on_progress=notifier.progress):
        pass
    pings = [t - t0 for t, m in listener.messages() if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) > 1.3  # nothing while the source stalled
    assert sum(1.0 < t < 2.4 for t in pings) <= 1 and any(t > 2.6 for t in pings)  # and again after it


def test_without_systemd_nothing_is_sent():
    n = Notifier({})
    assert not n.enabled
    n.ready()
    n.progress()
    n.stopping()  # no socket, no error
    assert Notifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}).watchdog_s == 0
