"""The latest-frame reader: a thread that keeps only the newest frame of a live source, and revives it.

Cameras buffer frames; reading them in the captioning loop would caption ever older frames.  The
reader thread reads continuously into one slot; the captioner takes whatever is newest, and frames
it never took are counted as dropped.  Sources that are not live (files, image folders) are read
without dropping: every frame is handed over, and the reader waits until it has been taken.

Faults of a live source, each detected within a bounded time and answered by closing the source and
opening it again (``reconnects``; reopen attempts back off from 0.5 s, doubling to ``max_backoff_s``,
so a source that comes back is in use again within ``max_backoff_s`` of its return):

- ``read()`` raises (an unplugged camera, a dead stream): at once.
- ``read()`` blocks: after ``stall_s``, by a watchdog.  The stuck thread is abandoned (its late frame,
  if any, is ignored) and a fresh thread reads the reopened source.  Closing the source usually frees
  the stuck thread; if more than ``max_abandoned`` stay stuck, the reader gives up with an error, so a
  supervisor (systemd) restarts the process instead of threads piling up.
- Garbage (not an image array: empty, wrong rank or channels, not a number type): never handed over,
  counted in ``bad_frames``; after ``garbage_s`` with nothing but garbage.
- The same frame again and again (a frozen driver): after ``frozen_s`` of bit-identical frames
  (``frozen``; 0 turns it off).  Real sensors are never bit-identical for long; a stream of a still
  picture may be, and then costs one harmless reopen per ``frozen_s``.

A non-live source that fails ends the stream with its error.  Sources that cannot be reopened
(``reopenable = False``: frames pushed by the caller) only get the garbage filter.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable

import numpy as np

from velm_edge.errors import SourceError
from velm_edge.live.sources import Frame, Source


def garbage(image) -> str | None:
    """Why ``image`` cannot be a frame at all (None if it can); values are judged later, by preprocessing."""
    if not isinstance(image, np.ndarray):
        return f"not an array ({type(image).__name__})"
    if image.size == 0 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        return f"shape {image.shape}"
    if image.dtype.kind not in "uf":
        return f"dtype {image.dtype}"
    return None


def fingerprint(image: np.ndarray) -> int:
    """A cheap checksum of a sparse pixel grid: equal for bit-identical frames, almost never otherwise."""
    return zlib.crc32(np.ascontiguousarray(image[::7, ::7]).tobytes())


class LatestFrameReader:
    def __init__(self, source: Source, stall_s: float = 5.0, max_backoff_s: float = 2.0, garbage_s: float = 2.0,
                 frozen_s: float = 10.0, max_abandoned: int = 4, on_frame: Callable[[Frame], None] | None = None):
        self.source, self.stall_s, self.max_backoff_s = source, stall_s, max_backoff_s
        self.garbage_s, self.frozen_s, self.max_abandoned = garbage_s, frozen_s, max_abandoned
        self.on_frame = on_frame  # called in the reader thread for every frame (a preview at the source's rate)
        self.dropped = 0  # live frames replaced before anyone took them
        self.read_count = 0
        self.bad_frames = 0  # garbage that was never handed over
        self.frozen = 0  # times the source was found repeating one frame
        self.reconnects = 0  # failures, stalls, garbage or frozen frames of a live source that led to a reopen
        self.last_fault: str | None = None
        self.error: BaseException | None = None  # what ended the stream, if it was not a normal end
        self._slot: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._generation = 0  # bumped when a stuck thread is abandoned
        self._last_progress = time.monotonic()
        self._reconnecting = False  # the watchdog does not count backoff waits as a stall
        self._threads: list[tuple[int, threading.Thread]] = []  # (generation, thread)

    def start(self) -> LatestFrameReader:
        self.source.open()
        self._spawn()
        if self.source.live and self.stall_s:
            threading.Thread(target=self._watchdog, name="reader watchdog", daemon=True).start()
        return self

    def _spawn(self) -> None:
        self._threads = [(g, t) for g, t in self._threads if t.is_alive()]  # finished ones are forgotten
        t = threading.Thread(target=self._run, args=(self._generation,), name=f"reader {self.source.uri}",
                             daemon=True)
        self._threads.append((self._generation, t))
        t.start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    @property
    def abandoned(self) -> int:
        """Reader threads still stuck in a read of a source that was given up on."""
        return sum(g != self._generation and t.is_alive() for g, t in self._threads)

    def _judge(self, frame: Frame, state: dict, revivable: bool) -> str | None:
        """"skip" for garbage, a reason to reopen a revivable source (garbage for too long, frozen), else None."""
        now = time.monotonic()
        why = garbage(frame.image)
        if why is not None:
            self.bad_frames += 1
            if revivable and now - state["good"] > self.garbage_s:
                return f"garbage: only malformed frames for {self.garbage_s:g} s ({why})"
            return "skip"
        state["good"] = now
        if self.frozen_s and revivable:
            mark = fingerprint(frame.image)
            if mark != state["mark"]:
                state["mark"], state["since"] = mark, now
            elif now - state["since"] > self.frozen_s:
                self.frozen += 1
                return f"frozen: the same frame for {self.frozen_s:g} s"
        return None

    def _run(self, generation: int) -> None:
        backoff = 0.5
        revivable = self.source.live and getattr(self.source, "reopenable", True)
        state = {"good": time.monotonic(), "mark": None, "since": 0.0}
        try:
            while self._current(generation):
                self._last_progress = time.monotonic()
                try:
                    frame = self.source.read()
                except Exception as e:
                    if not self.source.live:
                        raise
                    if not self._current(generation):
                        return
                    self._reconnect(f"{type(e).__name__}: {e}", backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                if not self._current(generation):
                    return  # abandoned while blocked: the new thread owns the source now
                if frame is not None:
                    verdict = self._judge(frame, state, revivable)
                    if verdict == "skip":
                        continue
                    if verdict is not None:
                        self._reconnect(verdict, backoff)
                        backoff = min(backoff * 2, self.max_backoff_s)
                        state = {"good": time.monotonic(), "mark": None, "since": 0.0}
                        continue
                if frame is not None and self.on_frame is not None:
                    self.on_frame(frame)
                with self._cond:
                    if frame is None:
                        break
                    backoff = 0.5
                    self.read_count += 1
                    if not self.source.live:
                        while self._slot is not None and not self._stop.is_set():
                            self._cond.wait(0.1)
                    elif self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self._cond.notify_all()
        except BaseException as e:  # reported to the consumer, never lost in the thread
            self.error = e
        finally:
            if generation == self._generation:
                with self._cond:
                    self._ended = True
                    self._cond.notify_all()

    def _reconnect(self, why: str, backoff: float) -> None:
        self._reconnecting = True
        self.reconnects += 1
        self.last_fault = why
        try:
            try:
                self.source.close()
            except Exception:  # a broken source may fail to close too; it is reopened below
                pass
            while not self._stop.wait(backoff):
                try:
                    self.source.open()
                    return
                except Exception as e:
                    self.last_fault = f"reopen failed: {type(e).__name__}: {e}"
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            self._last_progress = time.monotonic()
            self._reconnecting = False

    def _watchdog(self) -> None:
        while not self._stop.wait(min(0.5, self.stall_s / 4)):
            with self._cond:
                if self._ended:
                    return
            if not self._reconnecting and time.monotonic() - self._last_progress > self.stall_s:
                self._generation += 1  # the blocked thread's frame, if it ever comes, is ignored
                self._last_progress = time.monotonic()
                self._reconnect(f"stalled: no frame for {self.stall_s:g} s", 0.5)
                if self.abandoned > self.max_abandoned:
                    self.error = SourceError(f"{self.source.uri}: {self.abandoned} reader threads are stuck in "
                                             f"reads that never return; giving up (a restart clears them)")
                    with self._cond:
                        self._ended = True
                        self._cond.notify_all()
                    return
                if not self._stop.is_set():
                    self._spawn()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken; waits up to ``timeout`` s.  None: nothing new (see ``ended``)."""
        with self._cond:
            if self._slot is None and not self._ended:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    @property
    def ended(self) -> bool:
        """True once the source has ended (or failed: see ``error``) and the last frame was taken."""
        with self._cond:
            return self._ended and self._slot is None

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for _, t in self._threads:
            if t.is_alive():
                t.join(timeout)
        try:
            self.source.close()
        except Exception:
            pass
