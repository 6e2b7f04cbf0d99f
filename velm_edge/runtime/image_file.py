"""The one image-file reader: training, export, evaluation and the device all read pictures here.

``IMREAD_ANYDEPTH | IMREAD_ANYCOLOR`` keeps what the file holds (8 or 16 bits, grey or colour) *and*
applies the EXIF orientation, so a phone photo stored sideways with an "rotate 90" tag is captioned
upright, exactly as it was seen in training.  (``IMREAD_UNCHANGED`` ignores EXIF; an alpha channel is
the one thing dropped here, and captions never used it.)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from velm_edge.errors import FrameError

FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> grey (H, W) or BGR (H, W, 3), uint8 or uint16, upright.
    FrameError when OpenCV cannot decode them."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), FLAGS) if data else None
    if frame is None:
        raise FrameError("not an image file OpenCV can decode")
    return frame


def read_image(path: str | Path) -> np.ndarray:
    """An image file, upright (EXIF orientation applied); FrameError if it cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FrameError(f"cannot read: {e.strerror or e}") from None
    return decode_image(data)
