"""Frames from your own loop, captions through a callback: ``PushCaptioner``.

    with PushCaptioner(lambda event: print(event.text)) as cap:    # event: a CaptionEvent
        while running:
            cap.push(frame)          # never blocks: the newest frame wins, older ones are dropped

The callback runs on the captioner's worker thread.  ``close()`` (or leaving the ``with``) stops it
and re-raises an error the worker met.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from velm_edge.live.events import CaptionEvent
from velm_edge.live.options import LiveOptions
from velm_edge.live.pipeline import captions
from velm_edge.live.sources import PushSource
from velm_edge.runtime.bundle import DEFAULT_BUNDLE
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.options import RuntimeOptions


class PushCaptioner:
    """Push frames, receive ``CaptionEvent``s through ``on_caption`` (called on a worker thread)."""

    def __init__(self, on_caption: Callable[[CaptionEvent], None], bundle: str | Path = DEFAULT_BUNDLE,
                 runtime: RuntimeOptions | None = None, live: LiveOptions | None = None):
        self.source, self.on_caption = PushSource(), on_caption
        self.captioner = Captioner.open(bundle, runtime)
        self.live = live
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="push captioner", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for event in captions(self.source, self.captioner, self.live, stop=self._stop.is_set):
                self.on_caption(event)
        except BaseException as e:  # kept for the caller: close() re-raises it
            self.error = e

    def push(self, frame: np.ndarray) -> None:
        self.source.push(frame)

    def close(self) -> None:
        self._stop.set()
        self.source.close()
        self._thread.join(5)
        self.captioner.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> PushCaptioner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
