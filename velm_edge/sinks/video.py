"""The ``video:PATH[?fps=15]`` sink: the preview written to a video file with the captions and boxes burned in."""

from __future__ import annotations

from pathlib import Path

import cv2

from velm_edge.errors import OptionError
from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink
from velm_edge.sinks.overlay import draw_caption


class VideoSink(Sink):
    """``video:PATH[?fps=15]``: every preview frame written with the current caption burned in."""

    wants_frames = True

    def __init__(self, path: str, fps: float = 15.0):
        if fps <= 0:
            raise OptionError(f"video sink fps must be > 0, got {fps}")
        self.path, self.fps, self.name = Path(path), fps, f"video:{path}"
        self.text, self.frames, self.detections = "", 0, ()
        self._writer = None

    def start(self) -> VideoSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def frame(self, image) -> None:
        out = draw_caption(image, self.text, detections=self.detections)
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (out.shape[1], out.shape[0]))
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write this video format (use .mp4 or .avi)")
        self._writer.write(out)
        self.frames += 1

    def write(self, event: CaptionEvent) -> None:
        self.text, self.detections = event.text, event.detections

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
