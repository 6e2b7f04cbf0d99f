"""Keras VELM -> model bundle: vision and language TFLite graphs, embedding table, vocabulary, manifest.

``export(velm, out, precision, calibration)`` is what ``velm-convert export`` runs:

- ``int8``: full-integer graphs (int8 inputs, outputs, weights and activations; int32 biases),
  calibrated on dataset images (vision) and on recorded decode trajectories (language); the embedding
  table is stored int8 with the language graph's embedding-input parameters.
- ``float32``: plain float graphs and table (the reference a device can also run).
- ``dynamic``: int8 weights, float activations and I/O (smaller, no calibration).

Both graphs have batch size 1 and are reached by name.  Every export runs the op check
(``velm_convert.opcheck``) and refuses a graph that must not ship; the report is saved as op_check.json.
The bundle is written to a temporary directory and moved into place only when complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from velm_convert import calibrate, detector_files, opcheck, provenance
from velm_convert.datasets import CaptionSet, progress_bar
from velm_convert.model import Velm, count_macs, step_model, vision_model
from velm_edge import __version__
from velm_edge.errors import OptionError
from velm_edge.runtime import bundle, preprocess
from velm_edge.runtime.choices import PRECISIONS, check
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.detect import as_tags
from velm_edge.runtime.graph import Graph
from velm_edge.runtime.quant import QParams, quantize

log = logging.getLogger(__name__)


def fixed_batch(model: keras.Model) -> keras.Model:
    """The same layers behind batch-size-1 inputs, so the graph has static shapes (no SHAPE/PACK ops)."""
    if isinstance(model.input, dict):
        inputs = {k: keras.Input(v.shape[1:], batch_size=1, name=k) for k, v in model.input.items()}
    else:
        inputs = keras.Input(model.input.shape[1:], batch_size=1, name=model.input.name)
    return keras.Model(inputs, model(inputs), name=model.name)


@contextlib.contextmanager
def _converter_output_captured():
    """The TFLite converter prints pages of traces and C++ logs: keep them, show them only on failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            log_file.seek(0)
            sys.stderr.write(log_file.read()[-8000:].decode(errors="replace"))
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def to_tflite(model: keras.Model, precision: str, representative=None) -> bytes:
    import tensorflow as tf

    with _converter_output_captured():
        return _convert(tf, fixed_batch(model), precision, representative)


def _convert(tf, model: keras.Model, precision: str, representative) -> bytes:
    if isinstance(model.input, dict) and "image" in model.input:
        # a vision graph with a second input (the detections): from_keras_model fails on it (TFLite's Keras tracing
        # reaches for tf-keras' call context, None under Keras 3); Keras' own SavedModel export keeps the names
        with tempfile.TemporaryDirectory(prefix="velm-vision-") as saved:
            model.export(saved, format="tf_saved_model", verbose=False)
            return _quantized(tf, tf.lite.TFLiteConverter.from_saved_model(saved), precision, representative)
    return _quantized(tf, tf.lite.TFLiteConverter.from_keras_model(model), precision, representative)


def _quantized(tf, conv, precision: str, representative) -> bytes:
    if precision in ("int8", "dynamic"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8":
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _io_json(graph: Graph) -> dict:
    def one(d: dict) -> dict:
        return {"shape": [int(x) for x in d["shape"]], **QParams.of(d).to_json()}

    return {"inputs": {k: one(d) for k, d in graph.inputs.items()},
            "outputs": {k: one(d) for k, d in graph.outputs.items()}}


def _tool_versions() -> dict:
    import tensorflow as tf

    return {"velm_edge": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def compiler_ops(log: str) -> list[dict]:
    """The compiler's per-operator table ("Operator  Count  Status") as [{"op", "count", "status"}]."""
    ops, table = [], False
    for line in log.splitlines():
        if re.match(r"\s*Operator\s+Count\s+Status", line):
            table = True
            continue
        m = re.match(r"\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", line) if table else None
        if m:
            ops.append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3)})
    return ops


def compile_edgetpu(root: Path) -> dict | None:
    """Run edgetpu_compiler on both graphs when it is on PATH (None when it is not); the compiled graphs land
    in ``root`` as NAME_edgetpu.tflite, and the result records the log and which ops it mapped."""
    compiler = shutil.which("edgetpu_compiler")
    if not compiler:
        return None
    result = {}
    for name in ("vision", "language"):
        proc = subprocess.run([compiler, "-s", "-o", str(root), str(root / f"{name}.tflite")],
                              capture_output=True, text=True, timeout=600)
        compiled = root / f"{name}_edgetpu.tflite"
        ops = compiler_ops(proc.stdout)
        result[name] = {"returncode": proc.returncode, "log": proc.stdout[-4000:] + proc.stderr[-2000:],
                        "file": compiled.name if proc.returncode == 0 and compiled.is_file() else None,
                        "ops": ops, "all_mapped": bool(ops) and all(o["status"] == "Mapped to Edge TPU" for o in ops)}
    return result


def _manifest(velm: Velm, name: str, precision: str, graphs: dict[str, Graph], reports: dict, calib: dict | None,
              terms: str | None = None):
    cfg, vocab = velm.config, velm.vocab
    vision, language = graphs["vision"], graphs["language"]
    return {
        "name": name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tools": _tool_versions(),
        "precision": precision,
        "preprocess": {"size": cfg.image_size, "color_order": "RGB",
                       "resize": velm.resize_mode, "scale": 1.0 / 255},
        "tokens": {"pad": vocab.pad_id, "start": vocab.start_id, "end": vocab.end_id, "unk": vocab.unk_id},
        "vocab_size": len(vocab), "max_length": cfg.max_length,
        "feature_size": cfg.feature_dim, "state_size": cfg.units, "embedding_size": cfg.embed_dim,
        "embedding_quantization": language.qparams("embedding").to_json(),
        "graphs": {"vision": _io_json(vision), "language": _io_json(language)},
        "model": {"backbone": cfg.backbone, "config": cfg.to_json(), "parameters": int(velm.model.count_params()),
                  "macs": count_macs(velm.model, cfg), "dataset": velm.info.get("dataset"),
                  "train_images": velm.info.get("train_images")},
        "training": provenance.training(velm.info, cfg.backbone, terms),
        "calibration": calib,
        "op_check": {k: {"ops": r.ops, "not_edgetpu": r.not_edgetpu, "float_tensors": len(r.float_tensors)}
                     for k, r in reports.items()},
        "edgetpu": None,
        "metrics": {},
    }


def _calibration_detections(cfg, detector: str | Path | None, calibration: CaptionSet, n: int,
                            progress: bool) -> np.ndarray:
    """The detections of the first ``n`` calibration photos as tags, for a decoder trained on them."""
    if detector is None:
        raise OptionError("this model's decoder was trained on a detector's detections: give --detector (the "
                          "bundle or velm-convert detector folder its training used)")
    found = detector_files.open_detector(detector)
    if found.decoding.labels != cfg.detection_labels:
        raise OptionError(f"--detector {detector} has other labels than the detector the model was trained on")
    if len(calibration.files) < n:
        raise OptionError("a model trained on detections is calibrated on photos read from files; this "
                          "calibration set has none")
    dets = detector_files.detections_of(found, list(calibration.files[:n]), progress)
    return np.stack([as_tags(d, found.decoding.labels) for d in dets])


def export(velm: Velm, out: str | Path, precision: str, calibration: CaptionSet, calib_images: int = 200,
           calib_samples: int = 2000, overwrite: bool = False, progress: bool = True, edgetpu: bool = False,
           decoding: DecodeOptions | None = None, terms: str | None = None,
           detector: str | Path | None = None) -> Path:
    """Write the bundle OUT (a directory, conventionally NAME.velm) and return its path.  ``edgetpu``: also
    compile both graphs with edgetpu_compiler and store the compiled graphs (int8 only).  ``decoding``: the
    decoding the device uses by default (its ``DecodeOptions.MANIFEST`` fields go into the manifest; None:
    greedy).  ``terms``: the training data's terms, when ``velm_convert.provenance`` cannot tell them from the
    dataset.  An EfficientNet-Lite0 model's vision graph also outputs its ImageNet class probabilities
    ("classes"), and the bundle carries classes.json (``velm_convert.imagenet_words``)."""
    check("precision", precision, PRECISIONS)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    cfg = velm.config
    classifier = words = None
    if cfg.backbone == "efficientnet_lite0":  # ground captions in its ImageNet classifier (velm_edge.runtime.grounding)
        from velm_convert import efficientnet_lite, imagenet_words

        classifier = efficientnet_lite.classifier(cfg.backbone_weights)
        words = imagenet_words.word_table(set(velm.vocab.tokens[4:]))
        said = tuple(sorted({c["word"] for c in words["classes"] if c["word"]}, key=velm.vocab.id))
        if cfg.tag_words and said != cfg.tag_words:  # the decoder was trained on another class -> word table
            raise OptionError(f"the model's decoder was trained on {len(cfg.tag_words)} class words, but this "
                              f"velm_convert maps the classes to {len(said)} others (its word table changed "
                              f"since): retrain with this version")
    vision_k, step_k = vision_model(velm.model, classifier), step_model(velm.model)
    n = min(calib_images, len(calibration))
    images = preprocess.to_float(calibration.images[:n])
    found = None
    if detector is not None:
        found = detector_files.load(detector)
    if cfg.detection_labels:
        images = {"image": images, "detected": _calibration_detections(cfg, detector, calibration, n, progress)}
    traj = None
    if precision == "int8":
        if n == 0:
            raise OptionError("int8 export needs calibration images; none were given")
        bar = progress_bar(cfg.steps * 2, f"recording decode trajectories of {n} images", progress)
        traj = calibrate.record(velm, images, calibration.captions[:n], bar)
        bar.close()
        log.info("calibration: %s", traj.summary())
    vision_rep = (lambda: calibrate.vision_samples(images)) if traj else None
    language_rep = (lambda: calibrate.language_samples(traj, calib_samples)) if traj else None
    graphs = {}
    for name, model, rep in (("vision", vision_k, vision_rep), ("language", step_k, language_rep)):
        if progress:
            print(f"converting the {name} graph ({precision})...", flush=True)
        graphs[name] = to_tflite(model, precision, rep)
    reports = opcheck.check(graphs, precision)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same filesystem: the move is a rename
    try:
        for name, data in graphs.items():
            (tmp / f"{name}.tflite").write_bytes(data)
        loaded = {name: Graph(data, f"{name}.tflite") for name, data in graphs.items()}
        q_emb = loaded["language"].qparams("embedding")
        np.save(tmp / "embeddings.npy", quantize(velm.embedding_table, q_emb))  # float bundles: the float table
        (tmp / "vocab.txt").write_text(velm.vocab.to_text())
        if words is not None:
            (tmp / bundle.CLASSES_FILE).write_text(json.dumps(words, indent=1) + "\n")
        (tmp / "op_check.json").write_text(json.dumps({k: r.to_json() for k, r in reports.items()}, indent=2))
        calib = {"source": calibration.source, "images": n, **traj.summary()} if traj else None
        manifest = _manifest(velm, out.name.removesuffix(".velm"), precision, loaded, reports, calib, terms)
        if decoding is not None:
            manifest["decoding"] = decoding.for_manifest()
        manifest["edgetpu"] = compile_edgetpu(tmp) if edgetpu and precision == "int8" else None
        bundle.write_manifest(tmp, manifest)
        if found is not None:
            detector_files.add_to_bundle(tmp, *found)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
