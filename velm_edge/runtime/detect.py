"""Who and what is in the frame: the bundle's optional detector graph, its box decoding and NMS, on the host.

The detector graph (``detector.tflite``) takes a letterboxed square image and gives, for every anchor point of
its feature levels, a score per class (already through a sigmoid) and a box as a distribution over
``reg_max + 1`` distances for each side (GFL, as NanoDet's head: softmax, expectation, times the level's
stride).  Everything after the graph is numpy here: points whose best score clears the threshold are decoded,
boxes of one class that overlap too much are merged by non-maximum suppression (NMS), and the boxes are
mapped back to the pixels of the image the caller gave.

The manifest's ``detector`` section says how: ``labels`` (COCO's names, as Frigate and DeepStack spell them),
``size``, ``color_order`` (the graph takes plain pixel values: any normalisation is inside it), ``strides``,
``reg_max``, ``center_offset``, and the recommended ``min_score`` and ``iou``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from velm_edge.errors import BundleError, OptionError
from velm_edge.runtime import preprocess
from velm_edge.runtime.quant import QParams, dequantize

MAX_DETECTIONS = 100  # the most a request may ask for
LETTERBOX_FILL = 0  # black bars, as NanoDet's warp pads


@dataclass(frozen=True)
class Detection:
    """One object: its label, the detector's score (0..1) and its box in pixels of the image given
    (x_min, y_min, x_max, y_max; integers, inside the image)."""
    label: str
    score: float
    box: tuple[int, int, int, int]

    def to_json(self) -> dict:
        return {"label": self.label, "score": round(self.score, 3), "box": list(self.box)}


@dataclass(frozen=True)
class DetectOptions:
    """Whether the bundle's detector runs, and which of its objects are kept."""
    detect: bool = field(default=True, kw_only=True, metadata={
        "help": "run the bundle's detector where it has one (the photo bundle does): objects with boxes, and "
                "captions grounded in them"})
    min_score: float | None = field(default=None, kw_only=True, metadata={
        "help": "keep objects the detector scores at least this (0..1; default: the bundle's, 0.4 for the "
                "shipped photo bundle)"})
    classes: tuple[str, ...] = field(default=(), kw_only=True, metadata={
        "help": "keep only these labels, comma-separated (COCO's names: person,car,dog; default: all)"})
    max_detections: int = field(default=20, kw_only=True, metadata={
        "help": f"at most this many objects, the best first (1..{MAX_DETECTIONS})"})

    def __post_init__(self) -> None:
        if self.min_score is not None and (isinstance(self.min_score, bool) or not 0 <= self.min_score <= 1):
            raise OptionError(f"min_score must be a number in [0, 1], got {self.min_score!r}")
        if isinstance(self.max_detections, bool) or not isinstance(self.max_detections, int) \
                or not 1 <= self.max_detections <= MAX_DETECTIONS:
            raise OptionError(f"max_detections must be a whole number in [1, {MAX_DETECTIONS}], "
                              f"got {self.max_detections!r}")
        given = (self.classes,) if isinstance(self.classes, str) else tuple(self.classes)
        object.__setattr__(self, "classes", tuple(c.strip() for g in given for c in str(g).split(",") if c.strip()))

    def override(self, **changes) -> DetectOptions:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Letterbox:
    """Where a frame sits in the detector's square: pixels of the square = pixels of the frame * scale + offset."""
    scale: float
    offset: tuple[int, int]  # x, y
    frame_size: tuple[int, int]  # width, height of the frame

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in the square -> integer boxes in the frame, clipped to it."""
        ox, oy = self.offset
        w, h = self.frame_size
        out = (boxes - np.array([ox, oy, ox, oy], np.float32)) / self.scale
        out = np.rint(out)
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out.astype(np.int64)


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """A 3-channel uint8 frame -> (size, size, 3) with its aspect ratio kept, centred on black bars."""
    h, w = frame.shape[:2]
    interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
    canvas, scale, offset = preprocess.letterbox(frame, size, LETTERBOX_FILL, interp)
    return canvas, Letterbox(scale, offset, (w, h))


def square(frame: np.ndarray, decoding: Decoding, rgb: bool = False) -> tuple[np.ndarray, Letterbox]:
    """Any accepted frame (see ``preprocess``; ``rgb``: RGB(A) rather than BGR(A)) -> the detector's square in its
    colour order, and where the frame sits in it: what the graph sees, at runtime and in calibration alike."""
    image = preprocess.as_bgr(frame, rgb)
    if decoding.color_order == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return letterbox(image, decoding.size)


@dataclass(frozen=True)
class Decoding:
    """The detector section of a manifest, checked: how to read the graph's outputs."""
    labels: tuple[str, ...]
    size: int
    color_order: str
    strides: tuple[int, ...]
    reg_max: int
    center_offset: float
    min_score: float
    iou: float

    @classmethod
    def from_manifest(cls, section: dict, where: str) -> Decoding:
        def need(key, kind, ok):
            v = section.get(key)
            if not isinstance(v, kind) or isinstance(v, bool) or not ok(v):
                raise BundleError(f"{where}: detector.{key} is {v!r}, which is not valid")
            return v

        labels = need("labels", list, lambda v: 1 <= len(v) <= 1000 and all(
            isinstance(x, str) and 0 < len(x) <= 64 for x in v) and len(set(v)) == len(v))
        size = need("size", int, lambda v: 32 <= v <= 2048)
        strides = need("strides", list, lambda v: 1 <= len(v) <= 6 and all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= size and size % s == 0 for s in v))
        return cls(tuple(labels), size, need("color_order", str, lambda v: v in ("RGB", "BGR")), tuple(strides),
                   need("reg_max", int, lambda v: 1 <= v <= 64),
                   float(need("center_offset", (int, float), lambda v: 0 <= v <= 1)),
                   float(need("min_score", float, lambda v: 0 <= v <= 1)),
                   float(need("iou", float, lambda v: 0 < v <= 1)))

    @property
    def points(self) -> int:
        return sum((self.size // s) ** 2 for s in self.strides)

    @cached_property
    def anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every anchor point's (x, y) centre in the square and its stride, level after level, row by row."""
        xy, strides = [], []
        for s in self.strides:
            n = self.size // s
            ys, xs = np.mgrid[0:n, 0:n]
            xy.append((np.stack([xs.ravel(), ys.ravel()], 1) + self.center_offset) * s)
            strides.append(np.full(n * n, s, np.float32))
        return np.concatenate(xy).astype(np.float32), np.concatenate(strides)


def overlaps(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of ``boxes`` (N, 4), all x_min, y_min, x_max, y_max."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = w * h
    area = np.maximum(box[2] - box[0], 0) * np.maximum(box[3] - box[1], 0)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        order = rest[overlaps(boxes[i], boxes[rest]) <= iou]
    return keep


def decode(scores: np.ndarray, distributions: np.ndarray, points: np.ndarray, decoding: Decoding,
           min_score: float, wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float outputs of some anchor points, (K, C) scores and (K, 4 * (reg_max + 1)) box distributions, with the
    points' indices (K,) -> (boxes (D, 4) in the square, scores (D,), class ids (D,)) after NMS per class, best
    first.  ``wanted``: a (C,) mask of the classes kept (None: all)."""
    if wanted is not None:
        scores = np.where(wanted, scores, 0)
    row, cls = np.nonzero(scores >= min_score)
    if row.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    bins = decoding.reg_max + 1
    logits = distributions[row].reshape(-1, 4, bins).astype(np.float32)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    dist = (p / p.sum(axis=2, keepdims=True)) @ np.arange(bins, dtype=np.float32)  # (D, 4) in strides
    centers, strides = decoding.anchors
    c, s = centers[points[row]], strides[points[row]][:, None]
    boxes = np.concatenate([c - dist[:, :2] * s, c + dist[:, 2:] * s], axis=1)
    conf = scores[row, cls].astype(np.float32)
    offset = boxes.max(initial=0) + 1  # NMS per class in one pass: each class's boxes moved apart
    keep = nms(boxes + (cls * offset)[:, None], conf, decoding.iou)
    return boxes[keep], conf[keep], cls[keep]


class Detector:
    """The detector graph of one thread (not thread-safe, like every ``Graph``)."""

    def __init__(self, graph, decoding: Decoding):
        self.graph, self.decoding = graph, decoding
        self.q_image = graph.qparams("image")
        self.q_scores, self.q_boxes = graph.qparams("scores", True), graph.qparams("boxes", True)
        self._wanted: dict[tuple[str, ...], np.ndarray] = {}

    def wanted(self, classes: tuple[str, ...]) -> np.ndarray | None:
        if not classes:
            return None
        mask = self._wanted.get(classes)
        if mask is None:
            unknown = sorted(set(classes) - set(self.decoding.labels))
            if unknown:
                raise OptionError(f"classes {unknown} are not among the detector's labels; it knows "
                                  f"{', '.join(self.decoding.labels)}")
            mask = self._wanted[classes] = np.isin(self.decoding.labels, classes)
        return mask

    def min_score(self, options: DetectOptions) -> float:
        return self.decoding.min_score if options.min_score is None else float(options.min_score)

    def run(self, frame: np.ndarray, rgb: bool = False) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        """Any accepted frame (see ``preprocess``; ``rgb``: RGB(A) rather than BGR(A)) -> the graph's scores and
        box distributions as stored (int8 for int8 bundles), and where the frame sits in the square."""
        image, where = square(frame, self.decoding, rgb)
        self.graph.set("image", preprocess.to_input(image, self.q_image, 1.0))
        self.graph.invoke()
        return self.graph.get("scores")[0], self.graph.get("boxes")[0], where

    def detections(self, scores: np.ndarray, distributions: np.ndarray, where: Letterbox,
                   options: DetectOptions) -> tuple[Detection, ...]:
        """The graph's outputs -> ``Detection``s in the frame's pixels, best first, at most ``max_detections``."""
        threshold = self.min_score(options)
        points = np.arange(len(scores))
        if scores.dtype != np.float32:  # int8: only points whose best class may clear the threshold are dequantized
            points = np.nonzero(scores.max(axis=1) >= _q_threshold(threshold, self.q_scores))[0]
            scores, distributions = dequantize(scores[points], self.q_scores), \
                dequantize(distributions[points], self.q_boxes)
        boxes, conf, cls = decode(scores, distributions, points, self.decoding, threshold,
                                  self.wanted(options.classes))
        boxes = where.to_frame(boxes[:options.max_detections])
        return tuple(Detection(self.decoding.labels[c], float(s), tuple(int(v) for v in b))
                     for b, s, c in zip(boxes, conf, cls))


def as_tags(detections: tuple[Detection, ...], labels: tuple[str, ...]) -> np.ndarray:
    """Detections as tags, for a decoder trained on them (a vision graph with a "detected" input): for each label
    its best score (0: not seen), then for each label 1 where two or more are seen ("two people")."""
    index = {label: i for i, label in enumerate(labels)}
    tags = np.zeros(2 * len(labels), np.float32)
    for d in detections:
        i = index[d.label]
        if tags[i] > 0:
            tags[len(labels) + i] = 1.0
        tags[i] = max(tags[i], d.score)
    return tags


def _q_threshold(threshold: float, q: QParams) -> int:
    """The smallest stored value whose real value can reach ``threshold`` (a conservative pre-filter)."""
    return int(np.floor(threshold / q.scale + q.zero_point)) if q.scale > 0 else -128
