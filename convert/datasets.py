"""Caption datasets: synthetic scenes, COCO captions, Flickr8k token files, CSV and JSONL.

Every loader returns a ``CaptionSet``: images resized once to the model's input (RGB uint8, via
``velm_edge.preprocess.prepare``, the same function the device uses) and the reference captions of
each image.  Bad records (missing or unreadable image, empty caption) are skipped, counted and
reported with a warning; a source with no usable record raises ``DatasetError``.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from velm_edge import preprocess, scenes
from velm_edge.tokenizer import normalize

log = logging.getLogger(__name__)
FORMATS = ("synth", "coco", "flickr", "csv", "jsonl")
# Seeds of the synthetic splits never overlap: training counts up from 0, validation and the
# held-out evaluation scenes start far above anything a training run can reach.
VAL_SEED = 1_000_000_000
EVAL_SEED = 2_000_000_000
CALIB_SEED = 3_000_000_000  # int8 calibration scenes


class DatasetError(ValueError):
    """A dataset that cannot be used at all (no file, no usable record, wrong columns)."""


@dataclass
class CaptionSet:
    images: np.ndarray  # (N, H, W, 3) RGB uint8 at the model's input size
    captions: list[list[str]]  # reference captions of each image (at least one each)
    source: str = ""
    skipped: Counter = field(default_factory=Counter)  # reason -> records skipped

    def __post_init__(self) -> None:
        if len(self.images) != len(self.captions):
            raise ValueError(f"{len(self.images)} images but {len(self.captions)} caption lists")

    def __len__(self) -> int:
        return len(self.images)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[CaptionSet, CaptionSet]:
        """Random split by image (all captions of an image stay on one side)."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n_val = max(1, int(round(len(self) * val_fraction)))
        if n_val >= len(self):
            raise DatasetError(f"{self.source}: {len(self)} images are too few to hold out {val_fraction:.0%}")
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(order[n_val:]), self.subset(order[:n_val])

    def subset(self, idx: Iterable[int]) -> CaptionSet:
        idx = np.asarray(list(idx), dtype=np.int64)
        return CaptionSet(self.images[idx], [self.captions[i] for i in idx], self.source, Counter())


# ----------------------------------------------------------------------------- synthetic


def _synth_chunk(args) -> tuple[np.ndarray, list[str]]:
    start, n, cfg, size = args
    bgr, caps = scenes.generate_batch(start, n, cfg)
    rgb = np.stack([preprocess.prepare(im, size) for im in bgr]) if n else np.empty((0, size, size, 3), np.uint8)
    return rgb, caps


def iter_synthetic(start_seed: int, n: int | None, cfg: scenes.SceneConfig = scenes.SceneConfig(),
                   chunk: int = 1000) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Stream synthetic scenes in chunks (RGB uint8, captions); ``n=None`` never ends."""
    i = 0
    while n is None or i < n:
        k = chunk if n is None else min(chunk, n - i)
        yield _synth_chunk((start_seed + i, k, cfg, cfg.size))
        i += k


def synthetic(n: int, start_seed: int = 0, cfg: scenes.SceneConfig = scenes.SceneConfig(),
              image_size: int | None = None, workers: int | None = None, progress: bool = False) -> CaptionSet:
    """n scenes for seeds start_seed.., rendered in parallel (deterministic whatever the workers)."""
    if n < 1:
        raise DatasetError(f"need at least one synthetic scene, got n={n}")
    size = image_size or cfg.size
    chunk = 500
    jobs = [(s, min(chunk, start_seed + n - s), cfg, size) for s in range(start_seed, start_seed + n, chunk)]
    workers = workers or min(mp.cpu_count(), len(jobs))
    bar = progress_bar(len(jobs), f"rendering {n} scenes", progress)
    parts = []
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for part in pool.imap(_synth_chunk, jobs):
                parts.append(part)
                bar.update(1)
    else:
        for job in jobs:
            parts.append(_synth_chunk(job))
            bar.update(1)
    bar.close()
    images = np.concatenate([p[0] for p in parts])
    captions = [[c] for p in parts for c in p[1]]
    return CaptionSet(images, captions, f"synth:{start_seed}+{n}")


# ----------------------------------------------------------------------------- files on disk


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, or a silent stand-in with the same update/close methods."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the convert extra
        enabled = False
    if not enabled:
        class _Null:
            def update(self, n=1): pass
            def close(self): pass
        return _Null()
    return tqdm(total=total, desc=desc, unit="it", leave=False)


def _read_records_coco(path: Path) -> Iterator[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a readable COCO captions JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: a COCO captions file needs 'images' and 'annotations' lists")
    files = {im.get("id"): im.get("file_name") for im in data["images"] if isinstance(im, dict)}
    for ann in data["annotations"]:
        ann = ann if isinstance(ann, dict) else {}
        yield files.get(ann.get("image_id")) or "", str(ann.get("caption") or "")


def _read_records_flickr(path: Path) -> Iterator[tuple[str, str]]:
    """Flickr8k.token.txt: ``1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ...``."""
    for line in _read_lines(path):
        if not line.strip():
            continue
        name, sep, caption = line.partition("\t")
        if not sep:  # some copies use "name,caption"
            name, _, caption = line.partition(",")
        yield name.split("#")[0].strip(), caption.strip()


def _read_records_csv(path: Path) -> Iterator[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        img_col, cap_col = _columns(path, reader.fieldnames or [])
        for row in reader:
            yield (row.get(img_col) or "").strip(), (row.get(cap_col) or "").strip()


def _read_records_jsonl(path: Path) -> Iterator[tuple[str, str]]:
    cols = None
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{lineno}: not valid JSON, skipped", stacklevel=2)
            yield "", ""
            continue
        if not isinstance(row, dict):
            yield "", ""
            continue
        cols = cols or _columns(path, list(row))
        yield str(row.get(cols[0]) or "").strip(), str(row.get(cols[1]) or "").strip()


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None


IMAGE_COLUMNS = ("image", "image_path", "file_name", "filename", "path", "file")
CAPTION_COLUMNS = ("caption", "text", "sentence", "description")


def _columns(path: Path, names: list[str]) -> tuple[str, str]:
    lower = {n.strip().lower(): n for n in names if n}
    img = next((lower[c] for c in IMAGE_COLUMNS if c in lower), None)
    cap = next((lower[c] for c in CAPTION_COLUMNS if c in lower), None)
    if img is None or cap is None:
        raise DatasetError(f"{path}: needs an image column (one of {IMAGE_COLUMNS}) and a caption column "
                           f"(one of {CAPTION_COLUMNS}); found columns {names}")
    return img, cap


READERS = {"coco": _read_records_coco, "flickr": _read_records_flickr,
           "csv": _read_records_csv, "jsonl": _read_records_jsonl}


def guess_format(path: str | Path) -> str:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "coco"
    if suffix in (".txt", ".token") or "token" in p.name.lower():
        return "flickr"
    raise DatasetError(f"cannot tell the format of {p}; name it with --format ({', '.join(FORMATS[1:])})")


def load_captions(annotations: str | Path, images: str | Path | None = None, fmt: str | None = None,
                  image_size: int = 96, resize_mode: str = "stretch", max_images: int | None = None,
                  progress: bool = False) -> CaptionSet:
    """Load a caption file (COCO JSON / Flickr token file / CSV / JSONL) and its images.

    Image paths in the file are resolved against ``images`` (default: the file's own folder).
    """
    path = Path(annotations)
    if not path.is_file():
        raise DatasetError(f"caption file not found: {path}")
    fmt = fmt or guess_format(path)
    if fmt not in READERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {tuple(READERS)}")
    root = Path(images) if images is not None else path.parent
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")

    skipped: Counter = Counter()
    by_image: dict[str, list[str]] = {}
    for name, caption in READERS[fmt](path):
        if not name:
            skipped["record without an image name"] += 1
        elif not normalize(caption):
            skipped["empty caption"] += 1
        else:
            by_image.setdefault(name, []).append(caption)
    names = list(by_image)
    if max_images is not None:
        names = names[:max_images]

    images_out, captions_out = [], []
    bar = progress_bar(len(names), f"loading {path.name}", progress)
    for name in names:
        bar.update(1)
        file = root / name
        if not file.is_file():
            skipped["missing image"] += len(by_image[name])
            continue
        frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if frame is None:
            skipped["unreadable image"] += len(by_image[name])
            continue
        images_out.append(preprocess.prepare(frame, image_size, resize_mode))
        captions_out.append(by_image[name])
    bar.close()
    if skipped:
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        warnings.warn(f"{path}: skipped {sum(skipped.values())} caption records ({detail})", stacklevel=2)
    if not images_out:
        raise DatasetError(f"{path}: no usable record (image folder {root}); "
                           f"skipped: {dict(skipped) or 'nothing - the file has no records'}")
    return CaptionSet(np.stack(images_out), captions_out, f"{fmt}:{path}", skipped)
