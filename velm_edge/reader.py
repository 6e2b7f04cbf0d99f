"""The latest-frame reader: a thread that keeps only the newest frame of a live source, and revives it.

Cameras buffer frames; reading them in the captioning loop would caption ever older frames.  The
reader thread reads continuously into one slot; the captioner takes whatever is newest, and frames
it never took are counted as dropped.  Sources that are not live (files, image folders) are read
without dropping: every frame is handed over, and the reader waits until it has been taken.

Faults of a live source: a ``read()`` that raises (an unplugged camera, a dead stream) closes the
source and opens it again after a backoff (0.5 s, doubling to ``max_backoff_s``, reset by the next
good frame).  A ``read()`` that blocks for longer than ``stall_s`` is detected by a watchdog, not
waited out: the stuck thread is abandoned (its late frame, if any, is ignored), the source closed
and reopened by a fresh thread.  A non-live source that fails ends the stream with its error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from velm_edge.sources import Frame, Source


class LatestFrameReader:
    def __init__(self, source: Source, stall_s: float = 5.0, max_backoff_s: float = 10.0,
                 on_frame: Callable[[Frame], None] | None = None):
        self.source, self.stall_s, self.max_backoff_s = source, stall_s, max_backoff_s
        self.on_frame = on_frame  # called in the reader thread for every frame (a preview at the source's rate)
        self.dropped = 0  # live frames replaced before anyone took them
        self.read_count = 0
        self.reconnects = 0  # failures or stalls of a live source that led to a reopen
        self.last_fault: str | None = None
        self.error: BaseException | None = None  # what ended the stream, if it was not a normal end
        self._slot: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._generation = 0  # bumped when a stuck thread is abandoned
        self._last_progress = time.monotonic()
        self._reconnecting = False  # the watchdog does not count backoff waits as a stall
        self._threads: list[threading.Thread] = []

    def start(self) -> LatestFrameReader:
        self.source.open()
        self._spawn()
        if self.source.live and self.stall_s:
            threading.Thread(target=self._watchdog, name="reader watchdog", daemon=True).start()
        return self

    def _spawn(self) -> None:
        t = threading.Thread(target=self._run, args=(self._generation,), name=f"reader {self.source.uri}",
                             daemon=True)
        self._threads.append(t)
        t.start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _run(self, generation: int) -> None:
        backoff = 0.5
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
        for t in self._threads:
            if t.is_alive():
                t.join(timeout)
        try:
            self.source.close()
        except Exception:
            pass
