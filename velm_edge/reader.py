"""The latest-frame reader: a thread that keeps only the newest frame of a live source.

Cameras buffer frames; reading them in the captioning loop would caption ever older frames.  The
reader thread reads continuously into one slot; the captioner takes whatever is newest, and frames
it never took are counted as dropped.  Sources that are not live (files, image folders) are read
without dropping: every frame is handed over, and the reader waits until it has been taken.
"""

from __future__ import annotations

import threading

from velm_edge.sources import Frame, Source


class LatestFrameReader:
    def __init__(self, source: Source):
        self.source = source
        self.dropped = 0  # live frames replaced before anyone took them
        self.read_count = 0
        self.error: BaseException | None = None  # what ended the stream, if it was not a normal end
        self._slot: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=f"reader {source.uri}", daemon=True)

    def start(self) -> LatestFrameReader:
        self.source.open()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                with self._cond:
                    if frame is None:
                        break
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
            with self._cond:
                self._ended = True
                self._cond.notify_all()

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

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.source.close()
