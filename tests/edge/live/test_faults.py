"""Sources that fail, block, send garbage or freeze are detected within a bounded time and reopened
with a bounded backoff, and reconnects leak neither threads nor file descriptors."""

import gc
import os
import threading
import time

import numpy as np
import pytest

from velm_edge.errors import SourceError
from velm_edge.live import pipeline
from velm_edge.live.options import LiveOptions
from velm_edge.live.reader import LatestFrameReader
from velm_edge.live.sources import Source, SynthSource
from velm_edge.testing.faults import Fault, FaultySource, cycle
from velm_edge.testing.waiting import wait_until

LIMITS = dict(stall_s=0.5, garbage_s=0.5, frozen_s=0.5, max_backoff_s=0.5)


def open_fds() -> int:
    """Descriptors open now, after collecting garbage, so an earlier test's unreferenced pipes do not count."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def run_with(captioner, faults, seconds, **limits):
    source = FaultySource(SynthSource(fps=60, size=64, seed=3), faults)
    reader = LatestFrameReader(source, **{**LIMITS, **limits})
    events = list(pipeline.captions(source, captioner, LiveOptions(duration_s=seconds), reader=reader))
    return source, reader, events


@pytest.mark.parametrize("kind", ["fail", "stall", "garbage", "freeze"])
def test_each_fault_is_detected_and_recovered_from_within_the_backoff(captioner, kind):
    fds, threads = open_fds(), threading.active_count()
    source, reader, events = run_with(captioner, [Fault(0.5, kind, 1.5)], 4.0)
    end = source.t0 + 2.0  # when the source came back (monotonic)
    assert reader.reconnects >= 1 and reader.last_fault
    after = [e for e in events if e.captured - (time.time() - time.monotonic()) > end]
    assert after, "no caption after the source came back"
    first_back = after[0].captured - (time.time() - time.monotonic())
    assert first_back - end < 0.5 + 0.5  # the backoff cap plus one reopen and one frame
    if kind == "garbage":
        assert reader.bad_frames > 0 and events[-1].bad_frames >= reader.bad_frames
    if kind == "freeze":
        assert reader.frozen >= 1
    wait_until(lambda: open_fds() == fds and threading.active_count() <= threads, 5, "descriptors and threads back")


def test_many_reconnects_leak_neither_threads_nor_descriptors(captioner):
    faults = [Fault(0.2 + 1.0 * i, ("fail", "stall", "garbage", "freeze")[i % 4], 0.6) for i in range(8)]
    fds, threads = open_fds(), threading.active_count()
    source, reader, events = run_with(captioner, faults, 8.5, stall_s=0.3, garbage_s=0.2, frozen_s=0.3)
    assert reader.reconnects >= 8 and source.opens >= 8 and events
    wait_until(lambda: open_fds() == fds and threading.active_count() <= threads, 5, "descriptors and threads back")


class HangsForever(Source):
    """A driver that never returns from read(), even when closed."""

    uri = "hang:"

    def __init__(self):
        self.release = threading.Event()

    def read(self):
        if self.delivered < 3:
            time.sleep(0.01)
            return self.stamp(np.zeros((8, 8, 3), np.uint8))
        self.release.wait()
        return None


def test_a_source_that_keeps_hanging_ends_the_stream_with_an_error():
    source = HangsForever()
    reader = LatestFrameReader(source, stall_s=0.2, max_backoff_s=0.1, max_abandoned=2).start()
    deadline = time.monotonic() + 10
    while not reader.ended and time.monotonic() < deadline:
        reader.get(timeout=0.1)
    assert reader.ended and isinstance(reader.error, SourceError) and "stuck" in str(reader.error)
    source.release.set()  # let the stuck threads go
    reader.stop()


def test_fault_cycles_and_bad_faults():
    faults = cycle(120.0, period_s=20.0)
    assert [f.kind for f in faults] == ["fail", "stall", "garbage", "freeze", "fail"]
    assert all(f.start_s + f.seconds < 118 for f in faults)
    with pytest.raises(ValueError):
        Fault(1.0, "explode", 1.0)
