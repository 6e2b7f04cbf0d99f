"""Where live captions go, named by URI-like strings, behind one small interface (``start/write/stop``).

``print`` (text lines on stdout; the default), ``jsonl:-`` (JSON lines on stdout), ``jsonl:PATH``
(one complete JSON object per line, flushed after each), ``srt:PATH`` / ``vtt:PATH`` (subtitles: a
cue per caption change), ``kiosk[:HOST:PORT]`` (a local web page: see kiosk.py).
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


class SubtitleSink(Sink):
    """SubRip (``srt:PATH``) or WebVTT (``vtt:PATH``) subtitles: each caption shows from its frame's capture
    time until the next caption (the last one for ``last_s`` seconds), times counted from the first frame."""

    def __init__(self, path: str, fmt: str, last_s: float = 2.0):
        if fmt not in ("srt", "vtt"):
            raise ValueError(f"subtitle format must be srt or vtt, got {fmt!r}")
        self.path, self.fmt, self.last_s, self.name = Path(path), fmt, last_s, f"{fmt}:{path}"
        self._file: TextIO | None = None
        self._t0: float | None = None
        self._pending: tuple[float, str] | None = None
        self._n = 0

    def start(self) -> SubtitleSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        if self.fmt == "vtt":
            self._file.write("WEBVTT\n\n")
        return self

    def _stamp(self, t: float) -> str:
        ms = max(0, round(t * 1000))
        h, rest = divmod(ms, 3_600_000)
        m, rest = divmod(rest, 60_000)
        s, ms = divmod(rest, 1000)
        sep = "," if self.fmt == "srt" else "."
        return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"

    def _cue(self, start: float, end: float, text: str) -> None:
        self._n += 1
        number = f"{self._n}\n" if self.fmt == "srt" else ""
        self._file.write(f"{number}{self._stamp(start)} --> {self._stamp(end)}\n{text}\n\n")
        self._file.flush()

    def write(self, event: dict) -> None:
        if self._t0 is None:
            self._t0 = event["captured"]
        t = event["captured"] - self._t0
        if self._pending is not None and event["text"] != self._pending[1]:
            self._cue(self._pending[0], t, self._pending[1])
            self._pending = None
        if self._pending is None:
            self._pending = (t, event["text"])

    def stop(self) -> None:
        if self._file is None:
            return
        if self._pending is not None:
            self._cue(self._pending[0], self._pending[0] + self.last_s, self._pending[1])
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
    if spec == "kiosk" or spec.startswith(("kiosk:", "kiosk?")):
        from velm_edge.kiosk import parse_spec

        return parse_spec(spec)
    for fmt in ("srt", "vtt"):
        if spec.startswith(fmt + ":") and len(spec) > len(fmt) + 1:
            return SubtitleSink(spec[len(fmt) + 1:], fmt)
    raise ValueError(f"unknown sink {spec!r}: use print, jsonl:- or jsonl:PATH, srt:PATH or vtt:PATH, "
                     f"kiosk[:HOST:PORT][?token=...]")
