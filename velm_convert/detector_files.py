"""A converted detector graph on disk: in a bundle (``detector.tflite`` and the manifest's ``detector`` section) or
in a folder of its own (``detector.tflite`` and ``detector.json``, before the bundle exists), and what the
converter does with it: read it back, run it (TF-free: the device's own decoding), add it to a bundle.
``velm_convert.detector`` makes it; training, export and the feature cache use it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from velm_convert.datasets import progress_bar
from velm_convert.mentions import CATEGORIES, forms
from velm_edge.errors import VelmError
from velm_edge.runtime import detect
from velm_edge.runtime.bundle import read_file, read_manifest, write_manifest
from velm_edge.runtime.graph import Graph
from velm_edge.runtime.image_file import read_image

log = logging.getLogger(__name__)

FILE = "detector.tflite"
COCO_LABELS = tuple(CATEGORIES)  # COCO's 80 categories in the order detectors trained on COCO number them


class DetectorError(VelmError, RuntimeError):
    """The detector could not be fetched, converted, checked or read: the message says which step and why."""


UNSEEN_BANNED = ("person",)  # labels whose words a caption may say only when the detector sees one
NOT_BANNED = {"couple", "couples"}  # "a couple of pizzas": a person word that is mostly something else


def label_words(vocab: list[str]) -> dict[str, list[str]]:
    """Each label's caption words (``mentions.forms``: words and plurals) that are one token of ``vocab``."""
    known = set(vocab)
    words = {label: [w for w in forms(label) if w in known and (label not in UNSEEN_BANNED or w not in NOT_BANNED)]
             for label in COCO_LABELS}
    return {label: ws for label, ws in words.items() if ws}


def add_to_bundle(bundle: Path, model: bytes, section: dict) -> dict:
    """Write the detector graph into ``bundle`` and its section into the manifest (checksums renewed), with each
    label's words in the bundle's vocabulary (``velm_edge.runtime.grounding.DetectedWords``)."""
    manifest = read_manifest(bundle)
    vocab = (bundle / "vocab.txt").read_text().splitlines()
    section = {**section, "words": label_words(vocab), "unseen_banned": list(UNSEEN_BANNED)}
    (bundle / FILE).write_bytes(model)
    io = section.pop("graph")
    manifest["graphs"]["detector"] = io
    manifest["detector"] = section
    licences = [x for x in manifest.get("licences", []) if not x.startswith("detector:")]
    manifest["licences"] = [*licences, f"detector: {section['source']['licence']}"]
    written = write_manifest(bundle, manifest)
    log.info("wrote %s (%d bytes) into %s", FILE, len(model), bundle)
    return written


SECTION_FILE = "detector.json"  # beside detector.tflite in a folder ``write`` made (no bundle yet)


def write(folder: Path, model: bytes, section: dict) -> None:
    """The detector graph and its section into ``folder`` (no bundle yet: the recipe trains on its detections,
    then ``export --detector FOLDER`` puts it into the bundle)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).write_bytes(model)
    (folder / SECTION_FILE).write_text(json.dumps(section, indent=1) + "\n")


def load(path: str | Path) -> tuple[bytes, dict]:
    """The detector graph and its section (graph io included) from a bundle that has one or a folder ``write``
    made."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        manifest = read_manifest(path)
        if "detector" not in manifest:
            raise DetectorError(f"{path}: the bundle has no detector graph ({FILE})")
        return read_file(path, manifest, FILE), {**manifest["detector"], "graph": manifest["graphs"]["detector"]}
    if not (path / FILE).is_file() or not (path / SECTION_FILE).is_file():
        raise DetectorError(f"{path}: neither a bundle with a detector nor a folder with {FILE} and {SECTION_FILE} "
                            f"(velm-convert detector FOLDER writes one)")
    return (path / FILE).read_bytes(), json.loads((path / SECTION_FILE).read_text())


def open_detector(path: str | Path) -> detect.Detector:
    """``load``'s detector, ready to run (TF-free: the device's own decoding)."""
    model, section = load(path)
    return detect.Detector(Graph(model, f"{path}/{FILE}"), detect.Decoding.from_manifest(section, str(path)))


def detections_of(detector: detect.Detector, files: list[Path], progress: bool = False) -> list[tuple]:
    """Every label's detections at the bundle's threshold (what a caption is grounded in) on each photo."""
    from velm_edge.runtime.captioner import GROUNDING

    out = []
    bar = progress_bar(len(files), f"detecting objects in {len(files)} photos", progress)
    for file in files:
        out.append(detector.detections(*detector.run(read_image(file)), GROUNDING))
        bar.update(1)
    bar.close()
    return out


