"""Frame -> model image.  The one place that decides colour order, resizing and scaling.

The model sees RGB images scaled to [0, 1].  Training (convert/) and the device runtime both call
``prepare`` so a camera frame reaches the network exactly as training images did.
"""

from __future__ import annotations

import cv2
import numpy as np

RESIZE_MODES = ("stretch", "crop", "letterbox")


def resize(frame: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """Resize a BGR uint8 frame to (size, size, 3): stretch, centre crop, or letterbox (grey bars)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    if mode == "crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        frame = frame[y:y + side, x:x + side]
    elif mode == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = np.full((size, size, 3), 114, np.uint8)
        y, x = (size - nh) // 2, (size - nw) // 2
        canvas[y:y + nh, x:x + nw] = cv2.resize(frame, (nw, nh), interpolation=interp)
        return canvas
    return cv2.resize(frame, (size, size), interpolation=interp)


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Accept BGR, BGRA or grayscale uint8 frames; return BGR uint8."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ValueError(f"expected a non-empty image array, got {type(frame).__name__} "
                         f"of shape {getattr(frame, 'shape', None)}")
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {frame.dtype}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {frame.shape}")


def prepare(frame: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """BGR/BGRA/gray uint8 frame -> RGB uint8 (size, size, 3), ready to scale into the model."""
    return cv2.cvtColor(resize(as_bgr(frame), size, mode), cv2.COLOR_BGR2RGB)


def to_float(rgb_uint8: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., H, W, 3) -> float32 in [0, 1], the float model's input."""
    return rgb_uint8.astype(np.float32) * np.float32(1.0 / 255.0)
