"""Where live captions go, named by URI-like strings, behind one small interface (``start/write/stop``).

``print`` (text lines on stdout; the default), ``jsonl:-`` (JSON lines on stdout), ``jsonl:PATH``
(one complete JSON object per line, flushed after each), ``srt:PATH`` / ``vtt:PATH`` (subtitles: a
cue per caption change), ``video:PATH`` (captions burned in), ``window`` (OpenCV preview),
``kiosk[:HOST:PORT]`` (a local web page: kiosk.py), ``speak[:VOICE]`` (espeak-ng: speak.py) and
``mqtt://HOST[:PORT]/TOPIC`` (mqtt.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs

import cv2

from velm_edge.overlay import draw_caption, require_gui


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


class VideoSink(Sink):
    """``video:PATH[?fps=15]``: every preview frame written with the current caption burned in."""

    def __init__(self, path: str, fps: float = 15.0):
        if fps <= 0:
            raise ValueError(f"video sink fps must be > 0, got {fps}")
        self.path, self.fps, self.name = Path(path), fps, f"video:{path}"
        self.text, self.frames = "", 0
        self._writer = None

    def start(self) -> VideoSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def frame(self, image) -> None:
        out = draw_caption(image, self.text)
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (out.shape[1], out.shape[0]))
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write this video format (use .mp4 or .avi)")
        self._writer.write(out)
        self.frames += 1

    def write(self, event: dict) -> None:
        self.text = event["text"]

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class WindowSink(Sink):
    """``window``: an OpenCV window with the preview at the source's frame rate, the caption, captions per
    second and frame age; q or Esc quits.  Needs an OpenCV build with a GUI (not the headless wheel)."""

    name = "window"

    def __init__(self, title: str = "velm-edge"):
        require_gui("the window sink")
        self.title, self.text, self.status, self.stopped = title, "", "", False
        self._times: list[float] = []

    def frame(self, image) -> None:  # the reader thread: all window calls happen here
        cv2.imshow(self.title, draw_caption(image, self.text, self.status))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stopped = True

    def write(self, event: dict) -> None:
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < 2.0] + [now]
        self.text = event["text"]
        self.status = f"{len(self._times) / 2.0:.1f} captions/s, frame age {event['frame_age_ms']:.0f} ms"

    def stop(self) -> None:
        cv2.destroyAllWindows()


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
    if spec == "window":
        return WindowSink()
    if spec == "speak" or spec.startswith("speak:"):
        from velm_edge.speak import SpeakSink

        return SpeakSink(spec[len("speak:"):] or None)
    if spec.startswith("mqtt://"):
        from velm_edge.mqtt import MqttSink

        return MqttSink(spec)
    if spec.startswith("video:"):
        path, _, query = spec[len("video:"):].partition("?")
        if not path:
            raise ValueError("video: needs a file: video:PATH.mp4")
        fps = float((parse_qs(query).get("fps") or [15])[0])
        return VideoSink(path, fps)
    for fmt in ("srt", "vtt"):
        if spec.startswith(fmt + ":") and len(spec) > len(fmt) + 1:
            return SubtitleSink(spec[len(fmt) + 1:], fmt)
    raise ValueError(f"unknown sink {spec!r}: use print, jsonl:- or jsonl:PATH, srt:PATH, vtt:PATH, video:PATH, "
                     f"window, kiosk[:HOST:PORT][?token=...], speak[:VOICE] or mqtt://HOST[:PORT]/TOPIC")
