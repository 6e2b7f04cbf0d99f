"""The ``print`` sink (the default): one human-readable line per caption on stdout."""

from __future__ import annotations

import sys
from typing import TextIO

from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink


class PrintSink(Sink):
    """Frame number, frame age, caption (and the truth for synthetic frames)."""

    name = "print"

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def write(self, event: CaptionEvent) -> None:
        out = self.stream or sys.stdout
        truth = event.truth
        mark = "" if truth is None else ("  [= truth]" if event.correct else f"  [truth: {truth}]")
        print(f"frame {event.frame:6d}  age {event.frame_age_ms:6.1f} ms  {event.text}{mark}", file=out, flush=True)
