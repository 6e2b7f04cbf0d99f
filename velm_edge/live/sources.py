"""Frame sources, named by URI-like strings, behind one small interface (``open`` / ``read`` / ``close``).

The kinds of source and how each is written are ``SOURCE_KINDS`` (what ``velm-edge run --help``
prints); ``open_source(spec)`` opens one.

``read()`` returns a ``Frame`` or ``None`` at the end of the stream; a source that fails raises
``SourceError``.  Live sources (cameras, streams, synth) stamp each frame with its capture time.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from velm_edge.errors import FrameError, OptionError, SourceError
from velm_edge.runtime.image_file import read_image
from velm_edge.specs import Key, Kind, split, usage
from velm_edge.synth import scenes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8 (or whatever the source delivers; preprocess accepts the usual kinds)
    index: int  # frame number from the source, counting from 0
    captured: float  # time.monotonic() when the frame was captured
    truth: str | None = None  # the true caption, for synthetic frames
    name: str | None = None  # file name, for image folders


class Source:
    """The interface: ``open()`` (idempotent), ``read() -> Frame | None``, ``close()``; context manager."""

    uri: str = ""
    live: bool = True  # frames arrive in real time (a reader thread should drop stale ones)
    reopenable: bool = True  # close() then open() revives it (a reader reopens a failing live source)
    fps: float | None = None
    delivered: int = 0  # frames delivered so far (numbers the next frame)

    def stamp(self, image: np.ndarray, truth: str | None = None) -> Frame:
        """The next Frame: numbered from 0 and stamped with the time of capture."""
        frame = Frame(image, self.delivered, time.monotonic(), truth)
        self.delivered += 1
        return frame

    def open(self) -> Source:
        return self

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class SynthSource(Source):
    """The animated synthetic camera, paced in real time at ``fps`` (``realtime=False``: as fast as read).

    Scenes are rendered at ``render`` pixels (80: how the default model saw them in training; noise,
    blur and JPEG artefacts live at that pixel scale) and enlarged to ``size`` by pixel repetition, so
    a bigger preview shrinks back to exactly the rendered image.  ``render=size`` renders natively."""

    def __init__(self, fps: float = 15.0, size: int = 320, seed: int = 0, hold_s: float = 3.0,
                 frames: int | None = None, realtime: bool = True, render: int = 80):
        if size < 32 or render < 32 or fps <= 0 or (frames is not None and frames < 0):
            raise OptionError(f"synth: needs size >= 32, render >= 32, fps > 0 and frames >= 0, got size={size} "
                             f"render={render} fps={fps} frames={frames}")
        self.uri = f"synth:?fps={fps:g}&size={size}&seed={seed}&hold_s={hold_s:g}&render={render}"
        self.fps, self.frames, self.realtime, self.size = fps, frames, realtime, size
        self.camera = scenes.AnimatedScenes(seed=seed, fps=fps, hold_s=hold_s,
                                            cfg=scenes.SceneConfig(size=min(render, size)))
        self._t0 = None

    def read(self) -> Frame | None:
        if self.frames is not None and self.delivered >= self.frames:
            return None
        if self._t0 is None:
            self._t0 = time.monotonic()
        if self.realtime:
            due = self._t0 + self.delivered / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        image, truth = self.camera.frame(self.delivered)
        if image.shape[0] != self.size:
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return self.stamp(image, truth)


class ImagesSource(Source):
    """Image files from a folder or a glob, in name order; not live (every frame is captioned)."""

    live = False

    def __init__(self, pattern: str, loop: bool = False):
        self.uri, self.loop = pattern, loop
        p = Path(pattern)
        files = sorted(str(f) for f in p.iterdir()) if p.is_dir() else sorted(glob.glob(pattern))
        self.files = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
        if not self.files:
            raise SourceError(f"{pattern}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        self._i = 0

    def read(self) -> Frame | None:
        while True:
            if self._i >= len(self.files) and not self.loop:
                return None
            path = self.files[self._i % len(self.files)]
            index = self._i
            self._i += 1
            try:
                image = read_image(path)  # the one reader: EXIF orientation applied, as in training
            except FrameError:
                continue  # undecodable files are skipped (the pipeline counts frames by index gaps)
            return Frame(image, index, time.monotonic(), name=path)


class OpenCVSource(Source):
    """A camera, video file or network stream through ``cv2.VideoCapture``."""

    def __init__(self, target: str | int, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0,
                 loop: bool = False):
        self.target, self.loop = target, loop
        self.uri = str(target)
        self.is_file = isinstance(target, str) and os.path.isfile(target)
        self.live = not self.is_file
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.cap = None

    def open(self) -> OpenCVSource:
        if self.cap is not None:
            return self
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        api = cv2.CAP_FFMPEG if isinstance(self.target, str) and "://" in self.target else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.target, api, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: could not open (no such camera, file or stream, or the OpenCV build "
                              f"lacks the backend; 'velm-edge doctor' lists them)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self.cap = cap
        return self

    def read(self) -> Frame | None:
        if self.cap is None:
            self.open()
        ok, image = self.cap.read()
        if not ok:
            if self.is_file:
                if not self.loop:
                    return None
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self.cap.read()
                if not ok:
                    return None
            else:
                raise SourceError(f"{self.uri}: no frame within the read timeout ({self.read_timeout_s:g} s) "
                                  f"or the device went away")
        return self.stamp(image)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class Picamera2Source(Source):
    """A Raspberry Pi CSI camera through picamera2 (RGB888 frames are BGR in memory)."""

    def __init__(self, camera: int = 0, size: tuple[int, int] = (640, 480)):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                              "python3-picamera2' and create the venv with 'python3 -m venv "
                              "--system-site-packages'; OpenCV cannot open CSI cameras on the libcamera stack") \
                from None
        self.uri, self._cls, self.camera, self.size = f"picamera2:{camera}", Picamera2, camera, size
        self.cam = None

    def open(self) -> Picamera2Source:
        if self.cam is None:
            self.cam = self._cls(self.camera)
            self.cam.configure(self.cam.create_video_configuration(main={"format": "RGB888", "size": self.size}))
            self.cam.start()
        return self

    def read(self) -> Frame | None:
        if self.cam is None:
            self.open()
        return self.stamp(self.cam.capture_array("main"))

    def close(self) -> None:
        if self.cam is not None:
            self.cam.stop()
            self.cam.close()
            self.cam = None


class PushSource(Source):
    """A live source fed by ``push(image)`` from the caller's own loop (see pipeline.PushCaptioner)."""

    uri = "push:"
    reopenable = False  # closing it ends the stream: faults are the caller's to fix

    def __init__(self):
        import threading

        self._cond = threading.Condition()
        self._image, self._closed = None, False

    def push(self, image: np.ndarray) -> None:
        with self._cond:
            self._image = image
            self._cond.notify_all()

    def read(self) -> Frame | None:
        with self._cond:
            while self._image is None and not self._closed:
                self._cond.wait(0.5)
            if self._closed:
                return None
            image, self._image = self._image, None
        return self.stamp(image)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


SYNTH_KEYS = (Key("fps", float, "frames per second"), Key("size", int, "frame side in pixels"),
              Key("seed", int, "the camera's seed"), Key("hold_s", float, "seconds each layout holds"),
              Key("frames", int, "end after this many frames"), Key("render", int, "side the scenes are drawn at"))
SOURCE_KINDS = (
    Kind("synth", "synth:[?fps=15&size=320&seed=0&hold_s=3&frames=N&render=80]",
         "the animated synthetic camera, ground truth attached", SYNTH_KEYS),
    Kind("camera", "0, /dev/video0", "a camera through OpenCV"),
    Kind("file", "clip.mp4", "a video file (ends; --loop starts it again)"),
    Kind("stream", "rtsp://..., http(s)://...", "a network stream (OpenCV's FFmpeg backend, with open and read "
         "timeouts)"),
    Kind("images", "photos/, 'shots/*.jpg', photo.jpg", "image files from a folder, glob or one file, in name order"),
    Kind("picamera2", "picamera2:[N], csi://N", "a Raspberry Pi camera through picamera2"),
)


def open_source(uri: str, loop: bool = False) -> Source:
    """The source a URI-like string names (see ``SOURCE_KINDS``); raises SourceError or OptionError."""
    uri = uri.strip()
    if uri.startswith("synth:"):
        head, query = split(uri)
        if head != "synth:":
            raise OptionError(f"{uri}: expected synth: or synth:?KEY=VALUE&...")
        opts = SOURCE_KINDS[0].options(uri, query)
        return SynthSource(**opts)
    if uri.startswith(("picamera2:", "csi://")):
        index = uri.split(":", 1)[1].lstrip("/") or "0"
        if not index.isdigit():
            raise OptionError(f"{uri}: expected picamera2:N or csi://N with a camera number")
        return Picamera2Source(int(index))
    if uri.isdigit():
        return OpenCVSource(int(uri))
    if uri.startswith(("rtsp://", "rtsps://", "http://", "https://", "/dev/video")):
        return OpenCVSource(uri)
    if os.path.isdir(uri) or any(c in uri for c in "*?["):
        return ImagesSource(uri, loop)
    if os.path.isfile(uri):
        if uri.lower().endswith(IMAGE_SUFFIXES):
            return ImagesSource(uri, loop)
        return OpenCVSource(uri, loop=loop)
    raise SourceError(f"{uri!r}: not a camera index, device, file, folder, glob or stream URL (no such file or "
                      f"folder); sources: {usage(SOURCE_KINDS)}")


def default_camera() -> str | None:
    """The first camera device, if any (``None`` on a machine without one)."""
    devices = sorted(glob.glob("/dev/video*"))
    return devices[0] if devices else None
