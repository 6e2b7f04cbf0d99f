"""Fault injection: a live source that fails, stalls, sends garbage or freezes on a schedule.

For soak runs and tests of a deployment's recovery (``benchmarks/soak.py``), never for production::

    source = FaultySource(SynthSource(fps=30), [Fault(5, "fail", 3), Fault(15, "stall", 8)])

Times are seconds after the first ``open()``.  During a fault:

- ``fail``: ``open()`` and ``read()`` raise OSError, as for an unplugged camera.
- ``stall``: ``read()`` blocks until the fault ends or the source is closed (a hung driver).
- ``garbage``: ``read()`` returns frames that are not images (empty or wrongly shaped arrays).
- ``freeze``: ``read()`` returns the same picture again and again (a frozen driver).

``ScriptedSource`` plays a fixed script instead (``ok``, ``fail``, ``stall``, ``garbage``, one step
per read), for tests that count reconnects exactly.

Each ``FaultySource.open()`` takes a real file descriptor and each ``close()`` gives it back, so a reader that
forgets to close a source it abandons shows up as a descriptor leak.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from velm_edge.errors import OptionError
from velm_edge.live.sources import Frame, Source

KINDS = ("fail", "stall", "garbage", "freeze")


@dataclass(frozen=True)
class Fault:
    start_s: float
    kind: str
    seconds: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.start_s < 0 or self.seconds <= 0:
            raise OptionError(f"a fault needs a kind in {KINDS}, start_s >= 0 and seconds > 0, got {self}")


def cycle(total_s: float, period_s: float = 20.0, kinds: tuple[str, ...] = KINDS,
          lengths: dict[str, float] | None = None, first_s: float | None = None) -> list[Fault]:
    """A fault every ``period_s`` seconds from ``first_s`` (default: half a period), taking turns through
    ``kinds``, each over at least 2 s before ``total_s``."""
    lengths = {"fail": 3.0, "stall": 8.0, "garbage": 3.0, "freeze": 6.0, **(lengths or {})}
    faults, t, i = [], period_s / 2 if first_s is None else first_s, 0
    while t + lengths[kinds[i % len(kinds)]] < total_s - 2.0:
        kind = kinds[i % len(kinds)]
        faults.append(Fault(t, kind, lengths[kind]))
        t, i = t + period_s, i + 1
    return faults


class FaultySource(Source):
    def __init__(self, inner: Source, faults: list[Fault]):
        self.inner, self.faults = inner, sorted(faults, key=lambda f: f.start_s)
        self.uri, self.fps, self.live = f"faulty:{inner.uri}", inner.fps, True
        self.opens = 0
        self.t0: float | None = None  # time.monotonic() of the first open
        self._fd: int | None = None
        self._closed = threading.Event()
        self._frozen: np.ndarray | None = None

    def active(self, now: float | None = None) -> Fault | None:
        if self.t0 is None:
            return None
        t = (time.monotonic() if now is None else now) - self.t0
        return next((f for f in self.faults if f.start_s <= t < f.start_s + f.seconds), None)

    def open(self) -> FaultySource:
        if self.t0 is None:
            self.t0 = time.monotonic()
        fault = self.active()
        if fault is not None and fault.kind == "fail":
            raise OSError("injected fault: the device is gone")
        if self._fd is None:
            self._fd = os.open(os.devnull, os.O_RDONLY)
            self._closed = threading.Event()
            self.inner.open()
            self.opens += 1
        return self

    def read(self) -> Frame | None:
        fault = self.active()
        kind = fault.kind if fault else None
        if kind == "fail":
            raise OSError("injected fault: read failed")
        if kind == "stall":
            closed = self._closed
            closed.wait(self.t0 + fault.start_s + fault.seconds - time.monotonic())
            if closed.is_set():
                raise OSError("injected fault: closed while stalled")
        frame = self.inner.read()
        if frame is None:
            return None
        if kind == "garbage":
            junk = (np.zeros((0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.array(["x"]))[frame.index % 3]
            return Frame(junk, frame.index, frame.captured)
        if kind == "freeze":
            if self._frozen is None:
                self._frozen = frame.image
            return Frame(self._frozen, frame.index, frame.captured, frame.truth)
        self._frozen = None
        return frame

    def close(self) -> None:
        self._closed.set()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.inner.close()


class ScriptedSource(Source):
    """A live source that plays ``script`` one step per ``read()``: ``ok`` (the inner source's next frame),
    ``fail`` (OSError, an unplugged device), ``stall`` (blocks for ``stall_s``: a hung driver) or ``garbage``
    (an empty float array); the source ends when the script does.  ``opens``/``closes`` count the calls."""

    live, fps = True, 30.0

    def __init__(self, inner: Source, script: list[str], stall_s: float = 3.0):
        unknown = set(script) - {"ok", "fail", "stall", "garbage"}
        if unknown:
            raise OptionError(f"script steps are ok, fail, stall and garbage, got {sorted(unknown)}")
        self.inner, self.script, self.stall_s = inner, list(script), stall_s
        self.uri = f"scripted:{inner.uri}"
        self.opens = self.closes = 0

    def open(self) -> ScriptedSource:
        self.opens += 1
        return self

    def close(self) -> None:
        self.closes += 1

    def read(self) -> Frame | None:
        step = self.script.pop(0) if self.script else "end"
        if step == "fail":
            raise OSError("injected fault: device unplugged")
        if step == "stall":
            time.sleep(self.stall_s)  # blocks far longer than a reader's stall limit
        if step == "end":
            return None
        frame = self.inner.read()
        if step == "garbage":
            return Frame(np.zeros((0, 5), np.float32), frame.index, frame.captured)
        time.sleep(0.005)
        return frame
