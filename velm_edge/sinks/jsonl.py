"""The ``jsonl:-`` / ``jsonl:PATH`` sink: one complete JSON object per line (``CaptionEvent.to_json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink


class JsonlSink(Sink):
    """Flushed after each line, so a reader (or a killed process) never sees half a line; a file is appended to."""

    def __init__(self, target: str):
        self.target, self.name = target, f"jsonl:{target}"
        self._file: TextIO | None = None

    def start(self) -> JsonlSink:
        if self.target == "-":
            self._file = sys.stdout
        else:
            path = Path(self.target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        return self

    def write(self, event: CaptionEvent) -> None:
        self._file.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        self._file.flush()

    def stop(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None
