"""What a live caption is (``CaptionEvent``), and when a caption is announced (``Stabilizer``).

``live_captions``, ``captions``, ``PushCaptioner``'s callback and every sink receive ``CaptionEvent``
objects; ``to_json()`` is what the JSON lines, the kiosk page and MQTT messages carry.  This module is
the only part of the live room that sinks import.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from velm_edge.errors import OptionError
from velm_edge.runtime.tokenizer import normalize


@dataclass(frozen=True)
class CaptionEvent:
    """One caption of one frame, with where the frame came from and how the stream is doing."""

    text: str  # the caption
    tokens: tuple[int, ...]  # its token ids (no <start>/<end>)
    score: float  # sum of the tokens' log-probabilities
    complete: bool  # False when the length limit or time budget cut the caption short
    frame: int  # the source's frame number, from 0
    captured: float  # wall-clock time of capture, seconds since the epoch
    frame_age_ms: float  # capture to caption
    latency_ms: float  # preprocess + graphs + decoding of this caption
    confidence: float = 1.0  # 0..1, how sure the model is (velm_edge.runtime.confidence)
    tags: tuple = ()  # the ImageNet classifier's top classes: runtime.grounding.Tag (label, word, score)
    detections: tuple = ()  # the detector's objects: runtime.detect.Detection (label, score, box in frame pixels)
    dropped: int = 0  # frames the reader replaced before they were captioned, so far
    bad_frames: int = 0  # malformed frames skipped, so far
    reconnects: int = 0  # times the reader reopened the source, so far
    skipped: int | None = None  # frames skipped as unchanged (only with a scene gate)
    image: str | None = None  # the file name, for image folders
    truth: str | None = None  # the true caption, for synthetic frames
    correct: bool | None = field(default=None)  # whether the caption equals the truth (synthetic frames)

    @classmethod
    def of(cls, caption, frame: int = 0, captured: float | None = None, frame_age_ms: float = 0.0,
           **more) -> CaptionEvent:
        """The event of a ``Caption`` (e.g. one made in your own loop, to feed a sink): ``captured`` defaults to
        now; ``more`` sets the other fields (counters, image, truth, correct)."""
        return cls(text=caption.text, tokens=tuple(caption.tokens), score=round(caption.score, 4),
                   confidence=round(caption.confidence, 3), tags=tuple(caption.tags), complete=caption.complete,
                   detections=tuple(caption.detections),
                   frame=frame, captured=time.time() if captured is None else captured,
                   frame_age_ms=frame_age_ms, latency_ms=round(caption.timings_ms.get("total", 0.0), 3), **more)

    def to_json(self) -> dict:
        """A JSON-ready dict; the optional fields (skipped, image, truth, correct) only when they are set."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = list(value) if f.name == "tokens" else [t.to_json() for t in value] \
                if f.name in ("tags", "detections") else value
        return out


class Stabilizer:
    """A caption becomes the announced one only after it has been the result ``hold`` times in a row
    (compared after normalization); until then the previous one stays.  A flickering caption (A, B, A,
    B, ...) therefore never replaces a steady one: that is the hysteresis."""

    def __init__(self, hold: int = 3):
        if hold < 1:
            raise OptionError(f"hold must be >= 1, got {hold}")
        self.hold = hold
        self.current: str | None = None  # the announced caption
        self._candidate: tuple[str, ...] | None = None
        self._count = 0

    def update(self, text: str) -> bool:
        """Feed one caption; True when it has just become the announced caption."""
        key = tuple(normalize(text))
        if self.current is not None and key == tuple(normalize(self.current)):
            self._candidate, self._count = None, 0
            return False
        if key == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = key, 1
        if self._count >= self.hold:
            self.current, self._candidate, self._count = text, None, 0
            return True
        return False
