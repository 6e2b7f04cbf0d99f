"""Frozen-backbone features, computed once per image and kept on disk.

With a frozen pretrained backbone, every epoch would push the same photos through the same CNN; the
pooled features are computed once instead and the decoder trains on them in minutes.  A feature is
stored under a key made of the image file's content (sha256 of its bytes: renaming or copying a photo
does not recompute it, editing it does), the backbone and its weights file, the input size and the
resize mode::

    CACHE/<backbone>-<size>px-<resize>-<weights sha256[:12]>/<ab>/<image sha256>.npy

Files are written atomically (a temporary name, then a rename), so an interrupted run leaves only whole
entries and the next run computes what is missing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from velm_convert.datasets import progress_bar
from velm_edge.runtime import detect, preprocess
from velm_edge.runtime.image_file import decode_image

DEFAULT_DIR = Path(os.environ.get("VELM_FEATURE_CACHE", Path.home() / ".cache" / "velm-convert" / "features"))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    def __init__(self, root: str | Path, backbone: str, image_size: int, resize_mode: str, weights_sha256: str):
        self.dir = Path(root) / f"{backbone}-{image_size}px-{resize_mode}-{weights_sha256[:12]}"
        self.image_size, self.resize_mode = image_size, resize_mode

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        try:
            return np.load(self.path(key))
        except (OSError, ValueError):  # missing, or a file that is not an array: computed again
            return None

    def put(self, key: str, feature: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".npy", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(feature, np.float32))
        os.replace(tmp, path)

    def features(self, files: list[Path], encode: Callable[[np.ndarray], np.ndarray], batch_size: int = 32,
                 progress: bool = True) -> tuple[np.ndarray, list[int]]:
        """Features of ``files`` (cached ones read, the others computed with ``encode``: float images
        (N, size, size, 3) in [0, 1] -> (N, D) and stored).  Returns (features of the readable files, their
        indices); files that cannot be decoded are left out."""
        out: dict[int, np.ndarray] = {}
        todo: list[tuple[int, str, bytes]] = []
        for i, file in enumerate(files):
            data = Path(file).read_bytes()
            key = hashlib.sha256(data).hexdigest()
            cached = self.get(key)
            if cached is not None:
                out[i] = cached
            else:
                todo.append((i, key, data))
        bar = progress_bar(len(todo), f"features of {len(todo)} images ({len(out)} cached)", progress and bool(todo))
        for b in range(0, len(todo), batch_size):
            batch, images = [], []
            for i, key, data in todo[b:b + batch_size]:
                try:
                    frame = decode_image(data)
                except ValueError:
                    continue
                images.append(preprocess.prepare(frame, self.image_size, self.resize_mode))
                batch.append((i, key))
            if images:
                feats = np.asarray(encode(preprocess.to_float(np.stack(images))), np.float32)
                for (i, key), f in zip(batch, feats):
                    self.put(key, f)
                    out[i] = f
            bar.update(len(todo[b:b + batch_size]))
        bar.close()
        ok = sorted(out)
        if not ok:
            return np.empty((0, 0), np.float32), []
        return np.stack([out[i] for i in ok]), ok


def detected_tags(files: list[Path], detector: str | Path, root: str | Path = DEFAULT_DIR,
                  progress: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
    """The detections of a detector graph (a bundle with one, or velm-convert detector's folder) on each of
    ``files``, as tags (``detect.as_tags``; zeros for a file that cannot be decoded), and the detector's labels.
    Cached like features, under the graph's sha256: the int8 graph the device runs, so training sees what the
    device will see."""
    from velm_convert.detector_files import FILE, detections_of, open_detector

    found = open_detector(detector)  # a bundle and a folder alike hold the graph as FILE
    labels = found.decoding.labels
    cache = FeatureCache(root, "detected", found.decoding.size, "letterbox", file_sha256(Path(detector) / FILE))
    out = np.zeros((len(files), 2 * len(labels)), np.float32)
    bar = progress_bar(len(files), f"detections of {len(files)} images", progress)
    for i, file in enumerate(files):
        key = file_sha256(file)
        tags = cache.get(key)
        if tags is None:
            try:
                tags = detect.as_tags(detections_of(found, [file])[0], labels)
            except ValueError:
                tags = np.zeros(2 * len(labels), np.float32)
            cache.put(key, tags)
        out[i] = tags
        bar.update(1)
    bar.close()
    return out, labels
