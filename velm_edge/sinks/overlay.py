"""Captions and boxes drawn onto frames: the one place that lays them over video (window and video sinks,
``velm-edge detect --draw``)."""

from __future__ import annotations

import cv2
import numpy as np

from velm_edge.errors import SinkError
from velm_edge.runtime import preprocess


def require_gui(what: str) -> None:
    """Raise SinkError naming the fix when this OpenCV build cannot open windows (the headless wheel)."""
    gui = cv2.getBuildInformation().split("GUI:", 1)
    if len(gui) < 2 or gui[1].split()[0] == "NONE":
        raise SinkError(f"{what} needs an OpenCV build with a GUI: pip install opencv-python "
                         "(instead of opencv-python-headless), or use --sink kiosk")


def draw_detections(out: np.ndarray, detections) -> np.ndarray:
    """Each detection's box and "label 0.93" drawn onto the BGR image ``out`` (in place; returned)."""
    h, w = out.shape[:2]
    scale = max(0.4, w / 1400)
    thick = max(1, round(w / 400))
    for d in detections:
        x1, y1, x2, y2 = d.box
        colour = BOX_COLOURS[sum(map(ord, d.label)) % len(BOX_COLOURS)]  # one colour per label, run after run
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        label = f"{d.label} {d.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # above the box, or inside at the top
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + base + 2), colour, cv2.FILLED)
        cv2.putText(out, label, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


BOX_COLOURS = ((80, 200, 255), (120, 255, 120), (255, 160, 80), (200, 120, 255), (80, 255, 255), (255, 255, 120))


def draw_caption(frame: np.ndarray, text: str, status: str = "", detections=()) -> np.ndarray:
    """A BGR copy of ``frame`` with ``detections`` boxed, ``text`` on a dark band at the bottom and ``status`` at the
    top right."""
    out = draw_detections(preprocess.as_bgr(frame).copy(), detections)
    h, w = out.shape[:2]
    scale = max(0.4, w / 900)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text or " ", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    if tw > w - 20:  # long captions shrink to fit
        scale *= (w - 20) / tw
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = th + base + 16
    out[h - band:] = (out[h - band:] * 0.35).astype(np.uint8)
    cv2.putText(out, text, ((w - tw) // 2, h - base - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
    if status:
        s = scale * 0.6
        (sw, sh), _ = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, s, 1)
        cv2.putText(out, status, (w - sw - 8, sh + 8), cv2.FONT_HERSHEY_SIMPLEX, s, (255, 255, 255), 1, cv2.LINE_AA)
    return out
