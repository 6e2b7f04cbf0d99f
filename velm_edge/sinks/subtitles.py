"""The ``srt:PATH`` and ``vtt:PATH`` sinks: subtitles with a cue per caption change."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from velm_edge.errors import OptionError
from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink


class SubtitleSink(Sink):
    """SubRip (``srt:PATH``) or WebVTT (``vtt:PATH``) subtitles: each caption shows from its frame's capture
    time until the next caption (the last one for ``last_s`` seconds), times counted from the first frame."""

    def __init__(self, path: str, fmt: str, last_s: float = 2.0):
        if fmt not in ("srt", "vtt"):
            raise OptionError(f"subtitle format must be srt or vtt, got {fmt!r}")
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

    def write(self, event: CaptionEvent) -> None:
        if self._t0 is None:
            self._t0 = event.captured
        t = event.captured - self._t0
        if self._pending is not None and event.text != self._pending[1]:
            self._cue(self._pending[0], t, self._pending[1])
            self._pending = None
        if self._pending is None:
            self._pending = (t, event.text)

    def stop(self) -> None:
        if self._file is None:
            return
        if self._pending is not None:
            self._cue(self._pending[0], self._pending[0] + self.last_s, self._pending[1])
        self._file.close()
        self._file = None
