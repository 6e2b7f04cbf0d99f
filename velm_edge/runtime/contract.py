"""The bundle contract: what manifest.json must hold, and how the graphs agree with it and each other.

``check_manifest`` runs on the parsed JSON before anything else is trusted: every field the runtime
uses is type- and range-checked.  ``check_graphs`` runs once the graphs are loaded: names, shapes,
dtypes and quantization of every input and output against the manifest, feature/state/embedding
sizes between the two graphs, vocabulary size against the logits width, and the embedding table
against the language graph's embedding input.  Every refusal is a ``BundleError`` naming the file,
what was expected and what was found.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from velm_edge.errors import BundleError
from velm_edge.runtime.choices import COLOR_ORDERS, PRECISIONS, RESIZE_MODES
from velm_edge.runtime.detect import Decoding

if TYPE_CHECKING:
    from velm_edge.runtime.bundle import Bundle
    from velm_edge.runtime.graph import Graph

TENSOR_DTYPES = ("int8", "uint8", "int16", "float32")
SPECIAL_TOKENS = {"pad": 0, "start": 1, "end": 2, "unk": 3}  # velm_edge.runtime.tokenizer.Vocab's fixed ids
IO_NAMES = {"vision": ({"image"}, {"feature", "state"}),
            "language": ({"embedding", "feature", "state"}, {"logits", "state"}),
            "detector": ({"image"}, {"scores", "boxes"})}
OPTIONAL_GRAPHS = {"detector"}  # detector.tflite with the manifest's detector section (velm_edge.runtime.detect)
DETECTOR_FILE = "detector.tflite"
# Optional outputs: a grounded bundle's vision graph adds the ImageNet class probabilities (with classes.json), and
# one whose decoder was trained on tags also the start from the tags alone (tag_feature, tag_state: both or none).
OPTIONAL_OUTPUTS = {"vision": {"classes", "tag_feature", "tag_state"}, "language": set(), "detector": set()}
TAG_START = {"tag_feature", "tag_state"}
# Optional inputs: the vision graph of a decoder trained on detections takes them as tags ("detected": per label
# the best score, then per label whether two or more are seen; velm_edge.runtime.detect.as_tags): needs the detector.
OPTIONAL_INPUTS = {"vision": {"detected"}, "language": set(), "detector": set()}
CLASSES_FILE = "classes.json"
MAX_SIDE, MAX_WIDTH, MAX_STEPS, MAX_BEAM = 2048, 1 << 16, 1024, 16
MAX_LENGTH_PENALTY = 5.0  # decoding's length penalty: a bundle's recommendation and a request alike


def _where(manifest_path: str, key: str) -> str:
    return f"{manifest_path}: '{key}'"


def _int(m: dict, key: str, lo: int, hi: int, where: str) -> int:
    v = m.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BundleError(f"{_where(where, key)} must be an integer in [{lo}, {hi}], found {v!r}")
    return v


def _choice(m: dict, key: str, choices: tuple, where: str) -> str:
    v = m.get(key)
    if v not in choices:
        raise BundleError(f"{_where(where, key)} must be one of {choices}, found {v!r}")
    return v


def _dict(m: dict, key: str, where: str) -> dict:
    v = m.get(key)
    if not isinstance(v, dict):
        raise BundleError(f"{_where(where, key)} must be an object, found {type(v).__name__}")
    return v


def _qparams(d: dict, where: str) -> None:
    scale, zp = d.get("scale"), d.get("zero_point")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 0:
        raise BundleError(f"{where}: scale must be a finite number >= 0, found {scale!r}")
    if not isinstance(zp, int) or isinstance(zp, bool) or not -32768 <= zp <= 65535:
        raise BundleError(f"{where}: zero_point must be an integer, found {zp!r}")
    if d.get("dtype") not in TENSOR_DTYPES:
        raise BundleError(f"{where}: dtype must be one of {TENSOR_DTYPES}, found {d.get('dtype')!r}")


def check_files(m: dict, where: str, max_bytes: int) -> None:
    """The ``files`` table: plain file names inside the bundle, each with a sha256 and a size under the cap."""
    files = _dict(m, "files", where)
    for name, entry in files.items():
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", name) or ".." in name:
            raise BundleError(f"{where}: files names {name!r}; only plain file names inside the bundle are allowed")
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: files.{name} must be an object, found {type(entry).__name__}")
        digest, size = entry.get("sha256"), entry.get("bytes")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BundleError(f"{where}: files.{name}.sha256 must be 64 hex digits, found {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= max_bytes:
            raise BundleError(f"{where}: files.{name}.bytes must be an integer in [0, {max_bytes}], found {size!r}")


def check_manifest(m: dict, where: str) -> None:
    """Type- and range-check every manifest field the runtime reads (``where``: the manifest's path)."""
    _choice(m, "precision", PRECISIONS, where)
    pre = _dict(m, "preprocess", where)
    _int(pre, "size", 16, MAX_SIDE, f"{where}: preprocess")
    _choice(pre, "color_order", COLOR_ORDERS, f"{where}: preprocess")
    _choice(pre, "resize", RESIZE_MODES, f"{where}: preprocess")
    scale = pre.get("scale")
    if not isinstance(scale, float) or not 0 < scale <= 1:
        raise BundleError(f"{where}: preprocess 'scale' must be a number in (0, 1], found {scale!r}")
    tokens = _dict(m, "tokens", where)
    if tokens != SPECIAL_TOKENS or any(type(v) is not int for v in tokens.values()):
        raise BundleError(f"{_where(where, 'tokens')} must be {SPECIAL_TOKENS}, found {tokens!r}")
    _int(m, "vocab_size", len(SPECIAL_TOKENS) + 1, MAX_WIDTH, where)
    _int(m, "max_length", 2, MAX_STEPS, where)
    for key in ("feature_size", "state_size", "embedding_size"):
        _int(m, key, 1, MAX_WIDTH, where)
    _qparams(_dict(m, "embedding_quantization", where), f"{_where(where, 'embedding_quantization')}")
    decoding = m.get("decoding")  # optional: the decoding the bundle was measured with and recommends
    if decoding is not None:
        at = f"{where}: decoding"
        if not isinstance(decoding, dict):
            raise BundleError(f"{at} must be an object, found {type(decoding).__name__}")
        _int(decoding, "beam_size", 1, MAX_BEAM, at)
        penalty = decoding.get("length_penalty")
        if not isinstance(penalty, float) or not 0 <= penalty <= MAX_LENGTH_PENALTY:
            raise BundleError(f"{at} 'length_penalty' must be a number in [0.0, {MAX_LENGTH_PENALTY}], "
                              f"found {penalty!r}")
        if "no_repeat_ngram" in decoding:  # later additions: optional
            _int(decoding, "no_repeat_ngram", 0, 8, at)
        ground = decoding.get("ground", 0.5)
        if not isinstance(ground, float) or not 0 <= ground <= 1:
            raise BundleError(f"{at} 'ground' must be a number in [0.0, 1.0], found {ground!r}")
    tpu = m.get("edgetpu")
    if tpu is not None:
        if not isinstance(tpu, dict) or not set(tpu) <= set(IO_NAMES):
            raise BundleError(f"{_where(where, 'edgetpu')} must map graph names {sorted(IO_NAMES)} to compiler results")
        for graph, entry in tpu.items():
            file = entry.get("file") if isinstance(entry, dict) else "?"
            if file is not None and (not isinstance(file, str) or file not in m.get("files", {})):
                raise BundleError(f"{where}: edgetpu.{graph}.file {file!r} is not one of the bundle's files")
    graphs = _dict(m, "graphs", where)
    if set(graphs) - set(IO_NAMES):
        raise BundleError(f"{where}: graphs names {sorted(set(graphs) - set(IO_NAMES))}; a bundle's graphs are "
                          f"{sorted(IO_NAMES)}")
    if ("detector" in graphs) != ("detector" in m) or ("detector" in graphs) != (DETECTOR_FILE in m["files"]):
        raise BundleError(f"{where}: a detector needs all of graphs.detector, the detector section and "
                          f"{DETECTOR_FILE} among the files, or none of them")
    if "detector" in m:
        Decoding.from_manifest(_dict(m, "detector", where), where)
    for graph, (inputs, outputs) in IO_NAMES.items():
        if graph in OPTIONAL_GRAPHS and graph not in graphs:
            continue
        g = _dict(graphs, graph, f"{where}: graphs")
        for side, names in (("inputs", inputs), ("outputs", outputs)):
            io = _dict(g, side, f"{where}: graphs.{graph}")
            optional = OPTIONAL_OUTPUTS[graph] if side == "outputs" else OPTIONAL_INPUTS[graph]
            if not names <= set(io) <= names | optional:
                extra = f" (optionally {sorted(optional)})" if optional else ""
                raise BundleError(f"{where}: graphs.{graph}.{side} must name {sorted(names)}{extra}, "
                                  f"found {sorted(io)}")
            for name, d in io.items():
                at = f"{where}: graphs.{graph}.{side}.{name}"
                if not isinstance(d, dict):
                    raise BundleError(f"{at} must be an object, found {type(d).__name__}")
                shape = d.get("shape")
                if (not isinstance(shape, list) or not 1 <= len(shape) <= 4
                        or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_WIDTH
                                   for x in shape)):
                    raise BundleError(f"{at}: shape must be 1-4 positive integers, found {shape!r}")
                _qparams(d, at)


def expected_shapes(m: dict, classes: int = 0,
                    detector: Decoding | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """Every graph input/output's shape as the manifest's sizes imply (batch 1); ``classes``: the rows of
    classes.json, when the bundle has one; ``detector``: the detector's ``Decoding``, when it has one."""
    side, f, s = m["preprocess"]["size"], m["feature_size"], m["state_size"]
    found, vision = {}, {"image": (1, side, side, 3), "feature": (1, f), "state": (1, s), "classes": (1, classes),
                         "tag_feature": (1, f), "tag_state": (1, s)}
    if detector is not None:
        found["detector"] = {"image": (1, detector.size, detector.size, 3),
                             "scores": (1, detector.points, len(detector.labels)),
                             "boxes": (1, detector.points, 4 * (detector.reg_max + 1))}
        vision["detected"] = (1, 2 * len(detector.labels))
    return {**found, "vision": vision,
            "language": {"embedding": (1, m["embedding_size"]), "feature": (1, f), "state": (1, s),
                         "logits": (1, m["vocab_size"])}}


def check_graphs(bundle: Bundle, graphs: dict[str, Graph]) -> None:
    """The graphs given (vision and language; the detector where the bundle has one) against the manifest and each
    other; the embedding table against the language graph."""
    m, root = bundle.manifest, bundle.root
    shapes = expected_shapes(m, len(bundle.words) if bundle.words is not None else 0, bundle.decoding)
    want_dtype = "int8" if m["precision"] == "int8" else "float32"
    for name, graph in graphs.items():
        inputs, outputs = IO_NAMES[name]
        where = f"{root / (name + '.tflite')}"
        tag_start = set(graph.outputs) & TAG_START
        if tag_start and (tag_start != TAG_START or "classes" not in graph.outputs):
            raise BundleError(f"{where}: outputs {sorted(tag_start)}, but a start from the tags alone needs all of "
                              f"{sorted(TAG_START | {'classes'})}")
        if "detected" in graph.inputs and bundle.decoding is None:
            raise BundleError(f"{where}: takes the detector's detections (input 'detected'), but the bundle has no "
                              f"detector graph ({DETECTOR_FILE}) and manifest section")
        for side, names, output in (("inputs", inputs, False), ("outputs", outputs, True)):
            found = set(graph.outputs if output else graph.inputs)
            declared_names = set(m["graphs"][name][side])
            if not names <= found or found != declared_names:
                raise BundleError(f"{where}: {side} {sorted(found)}, expected {sorted(declared_names)} "
                                  f"(at least {sorted(names)})")
            if "classes" in found and bundle.words is None:
                raise BundleError(f"{where}: outputs ImageNet classes, but the bundle has no {CLASSES_FILE} "
                                  f"(the table of their labels and words)")
            for t in sorted(found):
                declared = m["graphs"][name][side][t]
                shape, dtype, q = graph.shape(t, output), graph.dtype(t, output), graph.qparams(t, output)
                if shape != shapes[name][t] or list(shape) != declared["shape"]:
                    raise BundleError(f"{where}: {t} has shape {shape}, expected {shapes[name][t]} "
                                      f"(manifest: {tuple(declared['shape'])})")
                if dtype != want_dtype or dtype != declared["dtype"]:
                    raise BundleError(f"{where}: {t} is {dtype}, expected {want_dtype} for a {m['precision']} "
                                      f"bundle (manifest: {declared['dtype']})")
                if q.zero_point != declared["zero_point"] or not math.isclose(q.scale, declared["scale"],
                                                                              rel_tol=1e-6, abs_tol=1e-12):
                    raise BundleError(f"{where}: {t} quantization (scale {q.scale:g}, zero point {q.zero_point}) "
                                      f"differs from the manifest's (scale {declared['scale']:g}, zero point "
                                      f"{declared['zero_point']})")
    q_emb = graphs["language"].qparams("embedding")
    table = bundle.embeddings
    if table.shape != (m["vocab_size"], m["embedding_size"]):
        raise BundleError(f"{root / 'embeddings.npy'}: shape {table.shape}, expected "
                          f"({m['vocab_size']}, {m['embedding_size']}) from the manifest")
    declared = m["embedding_quantization"]
    if (table.dtype != np.dtype(q_emb.dtype) or declared["dtype"] != q_emb.dtype
            or declared["zero_point"] != q_emb.zero_point
            or not math.isclose(declared["scale"], q_emb.scale, rel_tol=1e-6, abs_tol=1e-12)):
        raise BundleError(f"{root / 'embeddings.npy'}: stored as {table.dtype} with {declared}, but "
                          f"language.tflite's embedding input is {q_emb}; re-export the bundle")
    if table.dtype.kind == "f" and not np.isfinite(table).all():
        raise BundleError(f"{root / 'embeddings.npy'}: contains NaN or inf values")
