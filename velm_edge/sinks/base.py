"""The sink base class: every output of a live run is a ``Sink`` and nothing else is asked of it.

A run (``live.pipeline.run``) enters every sink as a context manager (``start``), calls ``write``
with each ``CaptionEvent``, calls ``frame`` with every preview frame if ``wants_frames`` is set (on
the reader's thread), ends early when a sink sets ``stopped`` (the window's q key), and leaves every
sink (``stop``: flush and close) however the run ends, even when another sink's ``stop`` fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from velm_edge.live.events import CaptionEvent


class Sink(ABC):
    name: str = "sink"  # how the sink is named in messages (its spec)
    wants_frames: bool = False  # True: ``frame`` is called with every preview frame (BGR), on the reader thread
    stopped: bool = False  # set by the sink to end the run (e.g. the window's q key)
    address: str | None = None  # where a person can reach the sink once started (the kiosk's HOST:PORT)

    def start(self) -> Sink:
        """Open files, sockets or windows; returns the sink."""
        return self

    @abstractmethod
    def write(self, event: CaptionEvent) -> None:
        """One caption event (called on the captioning thread)."""

    def frame(self, image: np.ndarray) -> None:  # noqa: B027 - optional: only sinks with wants_frames use it
        """One preview frame (only when ``wants_frames``)."""

    def stop(self) -> None:  # noqa: B027 - optional: sinks without resources have nothing to close
        """Flush and close; must be safe to call once after ``start`` whatever happened."""

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
