"""Skip frames that did not change since the last caption (``velm-edge run --gate``).

A frame is captioned only when its 32x32 grey thumbnail differs from the last captioned one by more
than ``threshold`` (mean absolute difference, 0-255 scale), or when ``max_interval_s`` has passed
since the last caption (so a caption is never older than that).
"""

from __future__ import annotations

import cv2
import numpy as np

from velm_edge.errors import OptionError
from velm_edge.runtime import preprocess


class SceneGate:
    def __init__(self, threshold: float = 4.0, max_interval_s: float = 2.0):
        if threshold < 0 or max_interval_s <= 0:
            raise OptionError(f"gate threshold must be >= 0 and max_interval_s > 0, got {threshold}, {max_interval_s}")
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
