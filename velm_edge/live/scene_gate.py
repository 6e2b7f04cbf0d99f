"""Two filters around the captioner: skip frames that did not change, and only announce steady captions.

``SceneGate``: a frame is captioned only when its 32x32 grey thumbnail differs from the last
captioned one by more than ``threshold`` (mean absolute difference, 0-255 scale), or when
``max_interval_s`` has passed since the last caption (so a caption is never older than that).

``Stabilizer``: a caption becomes the announced one only after it has been the result ``hold``
times in a row (compared after normalization); until then the previous one stays.  A flickering
caption (A, B, A, B, ...) therefore never replaces a steady one: that is the hysteresis.
"""

from __future__ import annotations

import cv2
import numpy as np

from velm_edge import preprocess
from velm_edge.tokenizer import normalize


class SceneGate:
    def __init__(self, threshold: float = 4.0, max_interval_s: float = 2.0):
        if threshold < 0 or max_interval_s <= 0:
            raise ValueError(f"gate threshold must be >= 0 and max_interval_s > 0, got {threshold}, {max_interval_s}")
        self.threshold, self.max_interval_s = threshold, max_interval_s
        self.skipped = 0
        self._last: np.ndarray | None = None
        self._last_t = -np.inf

    @staticmethod
    def thumbnail(frame: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(preprocess.as_bgr(frame), cv2.COLOR_BGR2GRAY)
        return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)

    def changed(self, frame: np.ndarray, now: float) -> bool:
        """True if this frame should be captioned (and then it becomes the reference)."""
        thumb = self.thumbnail(frame)
        if (self._last is not None and now - self._last_t < self.max_interval_s
                and float(np.abs(thumb - self._last).mean()) <= self.threshold):
            self.skipped += 1
            return False
        self._last, self._last_t = thumb, now
        return True


class Stabilizer:
    def __init__(self, hold: int = 3):
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
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
