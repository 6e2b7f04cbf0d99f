"""The ``window`` sink: an OpenCV preview window with the caption, captions per second and frame age."""

from __future__ import annotations

import time

import cv2

from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink
from velm_edge.sinks.overlay import draw_caption, require_gui


class WindowSink(Sink):
    """``window``: an OpenCV window with the preview at the source's frame rate, the caption, captions per
    second and frame age; q or Esc quits.  Needs an OpenCV build with a GUI (not the headless wheel)."""

    name = "window"
    wants_frames = True

    def __init__(self, title: str = "velm-edge"):
        require_gui("the window sink")
        self.title, self.text, self.status, self.stopped = title, "", "", False
        self.detections = ()
        self._times: list[float] = []

    def frame(self, image) -> None:  # the reader thread: all window calls happen here
        cv2.imshow(self.title, draw_caption(image, self.text, self.status, self.detections))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stopped = True

    def write(self, event: CaptionEvent) -> None:
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < 2.0] + [now]
        self.text, self.detections = event.text, event.detections
        self.status = f"{len(self._times) / 2.0:.1f} captions/s, frame age {event.frame_age_ms:.0f} ms"

    def stop(self) -> None:
        cv2.destroyAllWindows()
