"""Where live captions go, named by URI-like strings, behind one small interface (``start/write/stop``).

``print`` (text lines on stdout; the default), ``jsonl:-`` (JSON lines on stdout) and ``jsonl:PATH``
(one complete JSON object per line, flushed after each).  More sinks arrive with the kiosk page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO


class Sink:
    name = "sink"

    def start(self) -> Sink:
        return self

    def write(self, event: dict) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class PrintSink(Sink):
    """Human-readable lines: frame number, frame age, caption (and the truth for synthetic frames)."""

    name = "print"

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def write(self, event: dict) -> None:
        out = self.stream or sys.stdout
        truth = event.get("truth")
        mark = "" if truth is None else ("  [= truth]" if event.get("correct") else f"  [truth: {truth}]")
        print(f"frame {event['frame']:6d}  age {event['frame_age_ms']:6.1f} ms  {event['text']}{mark}", file=out,
              flush=True)


class JsonlSink(Sink):
    """One JSON object per line, flushed at once, so a reader (or a killed process) never sees half a line."""

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

    def write(self, event: dict) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()

    def stop(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None


def open_sink(spec: str) -> Sink:
    if spec == "print":
        return PrintSink()
    if spec.startswith("jsonl:"):
        target = spec[len("jsonl:"):]
        if not target:
            raise ValueError("jsonl: needs a target: jsonl:- (stdout) or jsonl:PATH")
        return JsonlSink(target)
    raise ValueError(f"unknown sink {spec!r}: use print, jsonl:- or jsonl:PATH")
