"""The model bundle: the contract between ``convert`` (which writes it) and the device (which reads it).

A directory ``NAME.velm/`` holding ``manifest.json``, ``vision.tflite``, ``language.tflite``,
``embeddings.npy`` and ``vocab.txt`` (plus reports, and optionally ``classes.json`` and ``detector.tflite``).
The manifest names the format and its version, the preprocessing, token ids, tensor sizes and quantization,
and the sha256 and size of every file; nothing is parsed before its size and checksum match. Every refusal is
a ``BundleError`` that names the file, what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from velm_edge.errors import BundleError
from velm_edge.runtime.contract import CLASSES_FILE, DETECTOR_FILE, check_files, check_manifest
from velm_edge.runtime.detect import Decoding
from velm_edge.runtime.grounding import WordTable
from velm_edge.runtime.quant import QParams
from velm_edge.runtime.tokenizer import Vocab

__all__ = ["CLASSES_FILE", "DEFAULT_BUNDLE", "FORMAT", "FORMAT_VERSION", "SHAPES_BUNDLE", "SHIPPED", "Bundle",
           "BundleError", "read_manifest", "resolve", "write_manifest"]

FORMAT = "velm-bundle"
FORMAT_VERSION = 1
REQUIRED_FILES = ("vision.tflite", "language.tflite", "embeddings.npy", "vocab.txt")
MODELS = Path(__file__).parent.parent / "models"  # velm_edge/models: the shipped bundles
# The bundles shipped in the package, by name: "photo" captions the real world (EfficientNet-Lite0 + GRU trained on
# Flickr8k; research-use data, see its manifest) and is the default; "shapes" knows the synthetic scenes only and is
# what synth: sources use unless told otherwise.
SHIPPED = {"photo": MODELS / "photo.velm", "shapes": MODELS / "shapes.velm"}
DEFAULT_BUNDLE = SHIPPED["photo"]
SHAPES_BUNDLE = SHIPPED["shapes"]
MAX_FILE_BYTES = 256 * 1024 * 1024  # no bundle file is read past this size
MAX_MANIFEST_BYTES = 1024 * 1024


def resolve(bundle: str | Path | None, source: object = None) -> Path:
    """A bundle path, or the name of a shipped bundle ("photo", "shapes"); None picks the default for the
    source: the shapes bundle for the synthetic camera (a ``synth:`` URI or source), the photo bundle otherwise."""
    if bundle is None:
        uri = source if isinstance(source, str) else getattr(source, "uri", "")  # a Source carries its URI
        return SHAPES_BUNDLE if str(uri).startswith("synth:") else DEFAULT_BUNDLE
    path = Path(bundle)
    if not path.exists() and str(bundle) in SHIPPED:
        return SHIPPED[str(bundle)]
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": sha256_bytes(data), "bytes": len(data)}


def write_manifest(root: str | Path, manifest: dict) -> dict:
    """Write manifest.json with a fresh sha256/size entry for every other file in the bundle."""
    root = Path(root)
    manifest = dict(manifest)
    manifest["format"], manifest["format_version"] = FORMAT, FORMAT_VERSION
    manifest["files"] = {p.name: file_entry(p) for p in sorted(root.iterdir())
                         if p.is_file() and p.name != "manifest.json"}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def read_manifest(root: str | Path, expect_sha256: str | None = None) -> dict:
    """The checked manifest; with ``expect_sha256``, refused unless manifest.json has exactly that digest."""
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (expected NAME.velm/ with a manifest.json)")
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{path}: missing or not a regular file; a bundle needs its manifest")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {size} bytes, expected at most {MAX_MANIFEST_BYTES}")
    raw = path.read_bytes()
    if expect_sha256 is not None and sha256_bytes(raw) != expect_sha256:
        raise BundleError(f"{path}: changed since it was probed; refusing to load it")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{path}: format {found!r}, expected {FORMAT!r}")
    if type(manifest.get("format_version")) is not int or manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(f"{path}: format_version {manifest.get('format_version')!r}, this velm-edge reads "
                          f"version {FORMAT_VERSION}; use a matching velm-edge or re-export the bundle")
    check_files(manifest, str(path), MAX_FILE_BYTES)
    check_manifest(manifest, str(path))
    return manifest


def read_file(root: Path, manifest: dict, name: str) -> bytes:
    """A bundle file's bytes, after its size and sha256 matched the manifest."""
    entry = manifest["files"].get(name)
    path = root / name
    if entry is None:  # entries that exist were checked by check_files
        raise BundleError(f"{root / 'manifest.json'}: no sha256/bytes entry for {name}")
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{path}: missing or not a regular file")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise BundleError(f"{path}: {size} bytes, the manifest says {entry['bytes']} (a truncated or changed copy?)")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != entry["sha256"]:
        raise BundleError(f"{path}: sha256 {digest}, the manifest says {entry['sha256']} (the file was changed)")
    return data


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict
    vision: bytes  # vision.tflite
    language: bytes  # language.tflite
    embeddings: np.ndarray  # (V, E), int8 for int8 bundles
    vocab: Vocab
    edgetpu: dict[str, bytes]  # graph name -> its edgetpu_compiler output, for graphs that have one
    words: WordTable | None = None  # classes.json: the vision graph's ImageNet classes and their caption words
    detector: bytes | None = None  # detector.tflite, where the bundle has one
    decoding: Decoding | None = None  # how to read the detector's outputs (the manifest's detector section)

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def embedding_qparams(self) -> QParams:
        return QParams.from_json(self.manifest["embedding_quantization"])

    @classmethod
    def load(cls, path: str | Path, manifest_sha256: str | None = None) -> Bundle:
        """Load and check a bundle directory, or a shipped one by name (``resolve``); see ``read``."""
        return cls.read(resolve(path), manifest_sha256)

    @classmethod
    def read(cls, root: Path, manifest_sha256: str | None = None) -> Bundle:
        """Load and check the bundle directory ``root``; ``manifest_sha256`` pins it to the manifest an isolated
        probe saw (every other file is pinned by the manifest's own checksums)."""
        root = Path(root)
        manifest = read_manifest(root, manifest_sha256)
        extra = {name: read_file(root, manifest, name)  # reports and compiled graphs: checked, not parsed
                 for name in sorted(set(manifest["files"]) - set(REQUIRED_FILES))}
        data = {name: read_file(root, manifest, name) for name in REQUIRED_FILES}
        compiled = {graph: extra[entry["file"]] for graph, entry in (manifest.get("edgetpu") or {}).items()
                    if entry.get("file")}
        try:
            table = np.load(io.BytesIO(data["embeddings.npy"]), allow_pickle=False)
        except Exception as e:  # np.load's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
            raise BundleError(f"{root / 'embeddings.npy'}: not a readable .npy array "
                              f"({type(e).__name__}: {e})") from None
        try:
            vocab = Vocab.from_text(data["vocab.txt"].decode("utf-8"), str(root / "vocab.txt"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BundleError(f"{root / 'vocab.txt'}: {e}") from None
        if len(vocab) != manifest["vocab_size"]:
            raise BundleError(f"{root / 'vocab.txt'}: {len(vocab)} tokens, the manifest says {manifest['vocab_size']}")
        if table.ndim != 2 or table.shape[0] != len(vocab):
            raise BundleError(f"{root / 'embeddings.npy'}: shape {table.shape}, expected ({len(vocab)}, E) "
                              f"for the {len(vocab)} tokens of vocab.txt")
        words = WordTable.from_bytes(extra[CLASSES_FILE], vocab, str(root / CLASSES_FILE)) \
            if CLASSES_FILE in extra else None
        decoding = Decoding.from_manifest(manifest["detector"], str(root / "manifest.json")) \
            if DETECTOR_FILE in extra else None
        return cls(root, manifest, data["vision.tflite"], data["language.tflite"], table, vocab, compiled, words,
                   extra.get(DETECTOR_FILE), decoding)
