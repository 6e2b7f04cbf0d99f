"""Malformed bundles made from a good one: what a bad copy, a bad disk or a hostile author could hand us.

``mutations(root)`` lists ``Mutation``s; ``m.apply(dst)`` writes the damaged bundle into ``dst`` (a copy
of the good one).  ``resealed`` mutations recompute the manifest's checksums afterwards, so the damage
gets past the sha256 check to the deeper ones (JSON, contract, flatbuffer verifier, graph checks,
.npy parser, vocabulary); the others must be stopped by the checksums themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_FILES = ("vision.tflite", "language.tflite", "embeddings.npy", "vocab.txt")
BAD_VALUES = (None, "x", -1, 0, 1e308, 2**63, [], {}, True, float("nan"))
# manifest fields the runtime reads: any wrong value of these must be refused
READ_BY_RUNTIME = ("precision", "preprocess", "tokens", "vocab_size", "max_length", "feature_size", "state_size",
                   "embedding_size", "embedding_quantization", "graphs", "files", "format", "format_version",
                   "decoding")
OPTIONAL_READ = ("decoding",)  # read when present; absent (or null) means the default (greedy)


@dataclass(frozen=True)
class Mutation:
    kind: str
    detail: str
    resealed: bool
    touches_graph: bool  # a .tflite file's bytes change and still match the manifest: only the probe may parse it
    must_refuse: bool  # no correct loader may accept it
    change: Callable[[Path], None]

    def apply(self, root: Path) -> None:
        self.change(root)
        if self.resealed:
            reseal(root)


def reseal(root: Path) -> None:
    """Recompute every file's sha256 and size in manifest.json (keeping every other field as it is)."""
    m = json.loads((root / "manifest.json").read_text())
    files = m.get("files") if isinstance(m, dict) else None
    if isinstance(files, dict):
        for name in list(files):
            p = root / name
            if p.is_file() and not p.is_symlink() and isinstance(files[name], dict):
                data = p.read_bytes()
                files[name] = {**files[name], "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (root / "manifest.json").write_text(json.dumps(m, indent=1))


def _truncate(name: str, n: int):
    def change(root: Path) -> None:
        p = root / name
        p.write_bytes(p.read_bytes()[:n])
    return change


def _flip(name: str, offset: int, bit: int):
    def change(root: Path) -> None:
        p = root / name
        data = bytearray(p.read_bytes())
        data[offset % len(data)] ^= 1 << bit
        p.write_bytes(bytes(data))
    return change


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + (k,)
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield path + (i,)
            yield from _leaves(v, path + (i,))


def _get(obj, path: tuple):
    for k in path:
        obj = obj[k]
    return obj


def _edit_manifest(path: tuple, value, remove: bool = False):
    def change(root: Path) -> None:
        m = json.loads((root / "manifest.json").read_text())
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        if remove:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        (root / "manifest.json").write_text(json.dumps(m, indent=1))
    return change


def _write(name: str, data: bytes):
    def change(root: Path) -> None:
        (root / name).write_bytes(data)
    return change


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _symlink(name: str, target: str):
    def change(root: Path) -> None:
        (root / name).unlink()
        os.symlink(target, root / name)
    return change


def _replace_with_dir(name: str):
    def change(root: Path) -> None:
        (root / name).unlink()
        (root / name).mkdir()
    return change


def _swap(a: str, b: str):
    def change(root: Path) -> None:
        da, db = (root / a).read_bytes(), (root / b).read_bytes()
        (root / a).write_bytes(db)
        (root / b).write_bytes(da)
    return change


def mutations(good: Path, seed: int = 0, per_file: int = 40) -> list[Mutation]:
    rng = random.Random(seed)
    out: list[Mutation] = []
    sizes = {name: (good / name).stat().st_size for name in (*DATA_FILES, "manifest.json")}
    # 1. truncation and 2. bit flips, in every file, caught by the checksums or (resealed) by the deeper checks
    for name in DATA_FILES:
        offsets = sorted({0, 1, 4, 8, 16, 64, sizes[name] - 1, *(rng.randrange(sizes[name]) for _ in range(per_file))})
        for resealed in (False, True):
            graph = name.endswith(".tflite") and resealed
            for n in offsets:  # resealed, a vocab.txt cut inside its last word is still a valid vocabulary, and
                # a graph that loses only its trailing alignment padding is still the whole graph
                whole = name == "vocab.txt" or n >= sizes[name] - 16
                out.append(Mutation("truncate", f"{name} to {n} bytes", resealed, graph, not (resealed and whole),
                                    _truncate(name, n)))
            for _ in range(per_file):
                off, bit = rng.randrange(sizes[name]), rng.randrange(8)
                out.append(Mutation("bit flip", f"{name} byte {off} bit {bit}", resealed, graph, not resealed,
                                    _flip(name, off, bit)))
    for n in sorted({0, 1, 2, 10, *(rng.randrange(sizes["manifest.json"]) for _ in range(per_file))}):
        out.append(Mutation("truncate", f"manifest.json to {n} bytes", False, False, True,
                            _truncate("manifest.json", n)))
    for _ in range(per_file):
        off, bit = rng.randrange(sizes["manifest.json"]), rng.randrange(8)
        out.append(Mutation("bit flip", f"manifest.json byte {off} bit {bit}", False, False, False,
                            _flip("manifest.json", off, bit)))
    # 3. every manifest field removed, or given a wrong type or a huge, negative or zero value (resealed)
    manifest = json.loads((good / "manifest.json").read_text())
    for path in _leaves(manifest):
        if path[0] == "files" and len(path) < 3:
            continue  # the files table itself is exercised below; resealing rewrites its entries
        read = path[0] in READ_BY_RUNTIME
        optional = len(path) == 1 and path[0] in OPTIONAL_READ  # removing it, or null, is a valid manifest
        label = ".".join(map(str, path))
        if not isinstance(path[-1], int):
            out.append(Mutation("field removed", label, path[0] != "files", False, read and not optional,
                                _edit_manifest(path, None, remove=True)))
        original = _get(manifest, path)
        for value in BAD_VALUES:
            if type(value) is type(original) and value == original:
                continue  # not a change
            out.append(Mutation("field value", f"{label} = {value!r}", path[0] != "files", False,
                                read and not (optional and value is None), _edit_manifest(path, value)))
    # 4. vocabulary and embedding table that disagree with each other or with the graphs (resealed)
    words = (good / "vocab.txt").read_text().splitlines()
    table = np.load(good / "embeddings.npy")
    bad_vocab = {"one word missing": words[:-1], "one word extra": words + ["zebra"],
                 "a duplicate": words[:-1] + [words[4]], "specials swapped": [words[1], words[0], *words[2:]],
                 "empty": [], "a blank line": words[:5] + [""] + words[6:]}
    for label, lines in bad_vocab.items():
        out.append(Mutation("vocabulary", label, True, False, True, _write("vocab.txt", "\n".join(lines).encode())))
    out.append(Mutation("vocabulary", "not UTF-8", True, False, True, _write("vocab.txt", b"\xff\xfe" + b"x\n" * 40)))
    bad_tables = {"float64": table.astype(np.float64), "int16": table.astype(np.int16),
                  "transposed": np.ascontiguousarray(table.T), "one row extra": np.vstack([table, table[:1]]),
                  "one row missing": table[:-1], "3-D": table[None], "1-D": table.ravel(),
                  "object array (pickle)": np.array([object()] * len(table), dtype=object)}
    for label, array in bad_tables.items():
        out.append(Mutation("embeddings", label, True, False, True, _write("embeddings.npy", _npy(array))))
    npy = (good / "embeddings.npy").read_bytes()
    for label, data in {"header garbled": npy[:10] + b"{'descr': '<i8'," + npy[26:],
                        "magic missing": b"\x00" * 6 + npy[6:], "body short": npy[:-100]}.items():
        out.append(Mutation("embeddings", label, True, False, True, _write("embeddings.npy", data)))
    # 5. files that leave the bundle, are not files, or are each other
    for name in DATA_FILES:
        out.append(Mutation("path", f"{name} a symlink to /etc/passwd", False, False, True,
                            _symlink(name, "/etc/passwd")))
        out.append(Mutation("path", f"{name} a directory", False, False, True, _replace_with_dir(name)))
        out.append(Mutation("path", f"{name} missing", False, False, True, lambda r, n=name: (r / n).unlink()))
    out.append(Mutation("path", "manifest.json a symlink to a copy", False, False, True,
                        lambda r: (shutil.copy(r / "manifest.json", r / "m.json"), (r / "manifest.json").unlink(),
                                   os.symlink("m.json", r / "manifest.json"))))
    for bad in ("../vision.tflite", "/etc/passwd", "a/b", ".hidden"):
        out.append(Mutation("path", f"files names {bad!r}", False, False, True,
                            _edit_manifest(("files", bad), {"sha256": "0" * 64, "bytes": 1})))
    out.append(Mutation("path", "a file larger than the cap", False, False, True,
                        _edit_manifest(("files", "vision.tflite", "bytes"), 1 << 40)))
    out.append(Mutation("swap", "vision.tflite <-> language.tflite", True, True, True,
                        _swap("vision.tflite", "language.tflite")))
    return out


DETECTOR_READ = ("labels", "size", "color_order", "strides", "reg_max", "center_offset", "min_score", "iou")
DETECTOR_OPTIONAL = ("words", "unseen_banned")  # read when present: absent means none
DETECTOR_VALID = {"center_offset": (0, 1)}  # bad values elsewhere, fine here (a point at a cell's corner or far edge)


def detector_mutations(good: Path, seed: int = 0, flips: int = 6) -> list[Mutation]:
    """The third graph's damage: detector.tflite cut, flipped, missing or swapped, and every field of the
    manifest's detector section removed or given a wrong value (resealed)."""
    rng = random.Random(seed)
    name, size = "detector.tflite", (good / "detector.tflite").stat().st_size
    out = [Mutation("truncate", f"{name} to {n} bytes", False, False, True, _truncate(name, n))
           for n in (0, 8, size // 2)]
    out += [Mutation("truncate", f"{name} to {n} bytes", True, True, True, _truncate(name, n)) for n in (16, size // 3)]
    for _ in range(flips):
        off, bit = rng.randrange(size), rng.randrange(8)
        out.append(Mutation("bit flip", f"{name} byte {off} bit {bit}", False, False, True, _flip(name, off, bit)))
    out.append(Mutation("path", f"{name} missing", False, False, True, lambda r: (r / name).unlink()))
    out.append(Mutation("path", f"{name} a symlink to /etc/passwd", False, False, True, _symlink(name, "/etc/passwd")))
    out.append(Mutation("swap", "detector.tflite <-> vision.tflite", True, True, True,
                        _swap("detector.tflite", "vision.tflite")))
    manifest = json.loads((good / "manifest.json").read_text())
    section = manifest["detector"]
    out.append(Mutation("field removed", "detector", True, False, True, _edit_manifest(("detector",), None, True)))
    out.append(Mutation("field removed", "graphs.detector", True, False, True,
                        _edit_manifest(("graphs", "detector"), None, True)))
    for key in (*DETECTOR_READ, *DETECTOR_OPTIONAL):
        optional = key in DETECTOR_OPTIONAL
        out.append(Mutation("field removed", f"detector.{key}", True, False, not optional,
                            _edit_manifest(("detector", key), None, True)))
        for value in BAD_VALUES:
            if value == section[key] or (optional and value in ({}, []) and type(value) is type(section[key])) \
                    or (type(value) is int and value in DETECTOR_VALID.get(key, ())):
                continue
            out.append(Mutation("field value", f"detector.{key} = {value!r}", True, False, True,
                                _edit_manifest(("detector", key), value)))
    labels = section["labels"]
    for label, changed in {"one label fewer": labels[:-1], "one label more": [*labels, "unicorn"],
                           "a duplicate": [*labels[:-1], labels[0]]}.items():
        out.append(Mutation("field value", f"detector.labels: {label}", True, False, True,
                            _edit_manifest(("detector", "labels"), changed)))
    out.append(Mutation("field value", "detector.size 320 (the graph takes 416)", True, False, True,
                        _edit_manifest(("detector", "size"), 320)))
    out.append(Mutation("field value", "detector.words names a word not in vocab.txt", True, False, True,
                        _edit_manifest(("detector", "words", "person"), ["xyzzy"])))
    for nested in ([["person"]], [{"a": 1}], ["unicorn"]):
        out.append(Mutation("field value", f"detector.unseen_banned = {nested!r}", True, False, True,
                            _edit_manifest(("detector", "unseen_banned"), nested)))
    return out
