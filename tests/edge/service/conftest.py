"""The service's fixtures: a service on loopback with an (empty) live board, and ``velm-edge serve`` in a process
of its own."""

import subprocess
import sys
import time

import pytest

from velm_edge.live.sources import Source
from velm_edge.service.server import CaptionService, ServiceOptions


class Quiet(Source):
    """A live source that has ended before its first frame: the service keeps its (empty) board of events."""
    uri, live = "test:", False

    def read(self):
        return None


@pytest.fixture
def service(captioner):
    with CaptionService(captioner, ServiceOptions(port=0, workers=2, timeout_s=2.0), Quiet()) as s:
        yield s


@pytest.fixture
def serve_process():
    """``velm-edge serve`` (shapes bundle) in its own process, so its memory can be read: (process, port)."""
    proc = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "serve", "--bundle", "shapes", "--port", "0",
                             "--workers", "2"], stderr=subprocess.PIPE, text=True)
    port, deadline = None, time.monotonic() + 60
    while port is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
    assert port, "serve did not start"
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
