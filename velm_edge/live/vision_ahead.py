"""The live frame loop (``encoded_frames``, which both live paths use), and the next frame's vision graph run
on its own thread with it while the current caption decodes (``VisionAhead``).

A caption is two halves: preprocess + the vision graph (``Captioner.encode_frame``), then the decode
loop over the language graph (``Captioner.decode_encoded``).  With a large backbone both halves take
milliseconds, and on a 2-core device they can run at once: this thread takes the newest frame from the
reader and encodes it, then waits (one slot) until the caller takes the result and starts encoding the
next frame while the caller decodes.  Each thread has its own interpreters (``Captioner`` keeps them per
thread), so no interpreter is used by two threads.  The cost: a caption's frame is older by up to one
decode time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from velm_edge.errors import FrameError
from velm_edge.live.reader import LatestFrameReader
from velm_edge.live.scene_gate import SceneGate
from velm_edge.live.sources import Frame
from velm_edge.runtime.captioner import Captioner, Encoded

END = object()  # the source ended


def encoded_frames(reader: LatestFrameReader, captioner: Captioner, gate: SceneGate | None,
                   on_progress: Callable[[], None] | None, counts: dict,
                   detect_every: int = 1) -> Iterator[tuple[Frame, Encoded] | None]:
    """The frame loop of both live paths: (frame, encoded) for each newest frame the scene gate lets through,
    None while there is nothing new (so the caller can look at its limits), until the source ends.  A malformed
    frame is counted in ``counts["bad"]``, never fatal; ``on_progress`` is called for every frame taken.
    ``detect_every``: the bundle's detector runs on every n-th encoded frame; the frames between keep the last
    detections (their boxes are as old as that frame)."""
    encoded_count, last = 0, None
    while True:
        frame = reader.get(timeout=0.2)
        if frame is None:
            if reader.ended:
                return
            yield None
            continue
        if on_progress is not None:
            on_progress()
        try:
            if gate is not None and not gate.changed(frame.image, frame.captured):
                yield None
                continue
            detect = encoded_count % detect_every == 0 or last is None
            encoded = captioner.encode_frame(frame.image, earlier=None if detect else last)
        except FrameError:  # an undecodable or malformed frame
            counts["bad"] += 1
            yield None
            continue
        encoded_count += 1
        if detect:
            last = encoded
        yield frame, encoded


class VisionAhead:
    """``encoded_frames`` on a thread of its own, one result ahead of the caller."""

    def __init__(self, reader: LatestFrameReader, captioner: Captioner, gate: SceneGate | None = None,
                 on_progress: Callable[[], None] | None = None, counts: dict | None = None, detect_every: int = 1):
        self.frames = encoded_frames(reader, captioner, gate, on_progress, counts if counts is not None else {"bad": 0},
                                     detect_every)
        self._slot: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vision ahead", daemon=True)

    def start(self) -> VisionAhead:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for item in self.frames:
                if self._stop.is_set():
                    return
                if item is not None:
                    self._put(item)
            self._put(END)
        except BaseException as e:  # handed to the caller, who re-raises it
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._slot.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def get(self, timeout: float) -> tuple[Frame, Encoded] | object | None:
        """(frame, encoded), ``END`` when the source ended, or None when nothing came within ``timeout``.
        An error of the worker is raised here."""
        try:
            item = self._slot.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
