"""Frame -> model image.  The one place that decides colour order, resizing, scaling and quantization.

The model sees RGB images scaled to [0, 1].  Training (convert/) and the device runtime both call
``prepare`` so a camera frame reaches the network exactly as training images did.

Accepted frames (anything else is a ``FrameError`` that says what was found and what to pass):

==============  ===========================================================================
dtype           uint8 (as is), uint16 (top 8 bits: 16-bit cameras, PNGs), float16/32/64 in
                [0, 1] (NaN, inf or values outside [0, 1] are refused, never wrapped)
shape           (H, W) or (H, W, 1) grey; (H, W, 3) BGR; (H, W, 4) BGRA; 1 <= H, W <= 16384
``rgb=True``    the 3/4-channel frame is RGB/RGBA (picamera2, PIL, matplotlib) instead of BGR
==============  ===========================================================================
"""

from __future__ import annotations

import cv2
import numpy as np

from velm_edge.errors import FrameError
from velm_edge.runtime.choices import COLOR_ORDERS, RESIZE_MODES, check
from velm_edge.runtime.quant import QParams, quantize

LETTERBOX_GREY = 114
MAX_SIDE = 16384  # larger frames are refused (OpenCV's resize and colour conversion stop at 32767)


def resize(frame: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """Resize a 3-channel uint8 frame to (size, size, 3): stretch, centre crop, or letterbox (grey bars)."""
    check("resize mode", mode, RESIZE_MODES)
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    if mode == "crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        frame = frame[y:y + side, x:x + side]
    elif mode == "letterbox":
        return letterbox(frame, size, LETTERBOX_GREY, interp)[0]
    return cv2.resize(frame, (size, size), interpolation=interp)


def letterbox(frame: np.ndarray, size: int, fill: int, interp: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """A 3-channel uint8 frame -> (size, size, 3) with its aspect ratio kept, centred on bars of ``fill``; also the
    scale and the (x, y) offset of the frame inside the square."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.full((size, size, 3), fill, np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    canvas[y:y + nh, x:x + nw] = cv2.resize(frame, (nw, nh), interpolation=interp)
    return canvas, scale, (x, y)


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Any accepted dtype -> uint8 with the same shape (see the module table)."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"expected an image as a numpy array, got {type(frame).__name__}")
    if frame.size == 0:
        raise FrameError(f"expected a non-empty image, got shape {frame.shape}")
    if frame.ndim >= 2 and max(frame.shape[:2]) > MAX_SIDE:
        raise FrameError(f"image sides must be at most {MAX_SIDE} pixels, got shape {frame.shape}")
    if frame.dtype.byteorder not in "=|":  # big-endian data (some 16-bit TIFFs and cameras): native order first
        frame = frame.astype(frame.dtype.newbyteorder("="))
    kind = frame.dtype
    if kind == np.uint8:
        return frame
    if kind == np.uint16:
        return (frame >> 8).astype(np.uint8)
    if kind.kind == "f":
        if not np.isfinite(frame).all():
            raise FrameError("float image contains NaN or inf values")
        lo, hi = float(frame.min()), float(frame.max())
        if lo < 0.0 or hi > 1.0:
            raise FrameError(f"float images must hold values in [0, 1], found [{lo:g}, {hi:g}] "
                             f"(divide 0-255 images by 255, or pass them as uint8)")
        return np.floor(frame.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)  # half up, in float64: exact
    raise FrameError(f"unsupported image dtype {kind}: pass uint8, uint16 or float in [0, 1]")


def as_bgr(frame: np.ndarray, rgb: bool = False) -> np.ndarray:
    """Any accepted frame (grey, BGR, BGRA, or RGB/RGBA with ``rgb=True``) -> contiguous BGR uint8 (H, W, 3)."""
    frame = to_uint8(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        frame = np.ascontiguousarray(frame)
        if frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR if rgb else cv2.COLOR_BGRA2BGR)
        return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if rgb else frame
    raise FrameError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {frame.shape}")


def prepare(frame: np.ndarray, size: int, mode: str = "stretch", rgb: bool = False, order: str = "RGB") -> np.ndarray:
    """Any accepted frame -> uint8 (size, size, 3) in the model's colour ``order`` (RGB, or BGR), ready to scale."""
    check("colour order", order, COLOR_ORDERS)
    image = resize(as_bgr(frame, rgb), size, mode)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if order == "RGB" else np.ascontiguousarray(image)


def to_float(rgb_uint8: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., H, W, 3) -> float32 in [0, 1], the float model's input."""
    return rgb_uint8.astype(np.float32) * np.float32(1.0 / 255.0)


def to_input(rgb_uint8: np.ndarray, q: QParams, scale: float = 1.0 / 255.0) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the image tensor (1, H, W, 3) in the input's own dtype and quantization.

    The usual int8 input (scale 1/255, zero point -128) is exactly ``pixel - 128``: a bit flip, no maths.
    """
    if q.dtype == "int8" and q.zero_point == -128 and abs(q.scale / scale - 1.0) < 1e-6:
        return (rgb_uint8 ^ np.uint8(0x80)).view(np.int8)[None]
    return quantize(rgb_uint8[None].astype(np.float32) * np.float32(scale), q)
