"""Caption datasets: synthetic scenes, COCO captions, Flickr8k token files, CSV, JSONL, and a Flickr8k
directory with its standard splits (``flickr8k``: captions.csv, images/, splits/{train,dev,test}.txt).

Every loader returns a ``CaptionSet``: images resized once to the model's input (RGB uint8, via
``velm_edge.runtime.preprocess.prepare``, the same function the device uses) and the reference captions of
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

import numpy as np

from velm_convert.config import FORMATS
from velm_edge.errors import VelmError
from velm_edge.runtime import preprocess
from velm_edge.runtime.image_file import read_image
from velm_edge.runtime.tokenizer import normalize
from velm_edge.synth import scenes

log = logging.getLogger(__name__)
# Seeds of the synthetic splits never overlap: training counts up from 0, validation and the
# held-out evaluation scenes start far above anything a training run can reach.
VAL_SEED = 1_000_000_000
EVAL_SEED = 2_000_000_000
CALIB_SEED = 3_000_000_000  # int8 calibration scenes


class DatasetError(VelmError, ValueError):
    """A dataset that cannot be used at all (no file, no usable record, wrong columns)."""


@dataclass
class CaptionSet:
    images: np.ndarray  # (N, H, W, 3) RGB uint8 at the model's input size
    captions: list[list[str]]  # reference captions of each image (at least one each)
    source: str = ""
    skipped: Counter = field(default_factory=Counter)  # reason -> records skipped
    files: tuple[Path, ...] = ()  # each image's file, where it came from one (the detector reads the whole photo)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.captions) or (self.files and len(self.files) != len(self.images)):
            raise ValueError(f"{len(self.images)} images but {len(self.captions)} caption lists and "
                             f"{len(self.files)} files")

    def __len__(self) -> int:
        return len(self.images)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[CaptionSet, CaptionSet]:
        """Random split by image (all captions of an image stay on one side); see ``held_out``."""
        train, val = held_out(len(self), val_fraction, seed, self.source)
        return self.subset(train), self.subset(val)

    def subset(self, idx: Iterable[int]) -> CaptionSet:
        idx = np.asarray(list(idx), dtype=np.int64)
        return CaptionSet(self.images[idx], [self.captions[i] for i in idx], self.source, Counter(),
                          tuple(self.files[i] for i in idx) if self.files else ())


def held_out(n: int, val_fraction: float, seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The one train/validation split of every caption set: (training, validation) indices of ``n`` images,
    ``val_fraction`` of them (at least one) held out at random with ``seed``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise DatasetError(f"{source}: {n} images are too few to hold out {val_fraction:.0%}")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val:], order[:n_val]


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


def caption_records(annotations: str | Path, fmt: str | None = None) -> tuple[dict[str, list[str]], Counter, str]:
    """Read a caption file: (image name -> its captions, in file order; skipped records by reason; format)."""
    path = Path(annotations)
    if not path.is_file():
        raise DatasetError(f"caption file not found: {path}")
    fmt = fmt or guess_format(path)
    if fmt not in READERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {tuple(READERS)}")
    skipped: Counter = Counter()
    by_image: dict[str, list[str]] = {}
    for name, caption in READERS[fmt](path):
        if not name:
            skipped["record without an image name"] += 1
        elif not normalize(caption):
            skipped["empty caption"] += 1
        else:
            by_image.setdefault(name, []).append(caption)
    return by_image, skipped, fmt


def read_split(path: str | Path) -> list[str]:
    """A split file: one image name per line (blank lines and # comments ignored), in file order."""
    names = [line.strip() for line in _read_lines(Path(path))]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DatasetError(f"{path}: the split file names no image")
    return names


def split_file(splits: str | Path, split: str) -> Path:
    """SPLITS/NAME.txt, or a clear error listing the splits that folder has."""
    root = Path(splits)
    path = root / f"{split}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in root.glob("*.txt")) if root.is_dir() else []
        raise DatasetError(f"no split file {path} (splits there: {', '.join(have) or 'none'})")
    return path


@dataclass(frozen=True)
class Layout:
    """Where a caption dataset's pieces are: the caption file, its format, the image folder, the splits."""
    annotations: Path
    fmt: str | None
    images: Path
    splits: Path | None


def flickr8k_layout(root: str | Path) -> Layout:
    """A directory laid out like the shared Flickr8k copy: captions.csv, images/, splits/{train,dev,test}.txt."""
    root = Path(root)
    if not (root / "captions.csv").is_file() or not (root / "images").is_dir():
        raise DatasetError(f"{root} is not a Flickr8k directory: it needs captions.csv (image,caption), images/ and "
                           f"splits/train.txt, dev.txt, test.txt")
    return Layout(root / "captions.csv", "csv", root / "images", root / "splits")


def layout(dataset: str, annotations: str | Path | None, images: str | Path | None = None,
           splits: str | Path | None = None) -> Layout:
    """Resolve a dataset's pieces from the command-line options (``flickr8k``: ANNOTATIONS is the directory)."""
    if not annotations:
        raise DatasetError(f"--annotations is required for the {dataset} dataset"
                           + (" (the Flickr8k directory)" if dataset == "flickr8k" else ""))
    if dataset == "flickr8k":
        lay = flickr8k_layout(annotations)
        return Layout(lay.annotations, lay.fmt, Path(images) if images else lay.images,
                      Path(splits) if splits else lay.splits)
    path = Path(annotations)
    return Layout(path, None if dataset in (None, "auto") else dataset, Path(images) if images else path.parent,
                  Path(splits) if splits else None)


@dataclass
class FileSet:
    """A dataset's images as files (not yet decoded) with their reference captions."""
    files: list[Path]
    captions: list[list[str]]
    source: str
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.files)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[FileSet, FileSet]:
        """Random split by image, as ``CaptionSet.split`` (``held_out``): SOURCE#train and SOURCE#val."""
        parts = held_out(len(self), val_fraction, seed, self.source)
        return tuple(FileSet([self.files[i] for i in idx], [self.captions[i] for i in idx], f"{self.source}#{name}")
                     for name, idx in zip(("train", "val"), parts))


def file_set(lay: Layout, split: str | None = None, max_images: int | None = None) -> FileSet:
    """The images of a caption file (all, or those of SPLITS/SPLIT.txt in that file's order) that exist."""
    by_image, skipped, fmt = caption_records(lay.annotations, lay.fmt)
    if not lay.images.is_dir():
        raise DatasetError(f"image folder not found: {lay.images}")
    if split is not None:
        if lay.splits is None:
            raise DatasetError(f"split {split!r} asked for, but no --splits folder was given")
        names = read_split(split_file(lay.splits, split))
        unknown = [n for n in names if n not in by_image]
        if unknown:
            skipped["split image without captions"] += len(unknown)
        names = [n for n in names if n in by_image]
    else:
        names = list(by_image)
    if max_images is not None:
        names = names[:max_images]
    files, captions = [], []
    for name in names:
        file = lay.images / name
        if file.is_file():
            files.append(file)
            captions.append(by_image[name])
        else:
            skipped["missing image"] += len(by_image[name])
    source = f"{fmt}:{lay.annotations}" + (f"#{split}" if split else "")
    if skipped:
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        warnings.warn(f"{source}: skipped {sum(skipped.values())} caption records ({detail})", stacklevel=2)
    if not files:
        raise DatasetError(f"{source}: no usable record (image folder {lay.images}); "
                           f"skipped: {dict(skipped) or 'nothing - the file has no records'}")
    return FileSet(files, captions, source, skipped)


def read_images(files: list[Path], image_size: int, resize_mode: str = "stretch", progress: bool = False,
                desc: str = "reading images") -> tuple[np.ndarray, list[int]]:
    """Decode and fit images (RGB uint8, the device's own reader and preprocessing); returns the images and
    the indices of the files that could be decoded."""
    out, ok = [], []
    bar = progress_bar(len(files), desc, progress)
    for i, file in enumerate(files):
        bar.update(1)
        try:
            frame = read_image(file)
        except ValueError:
            continue
        out.append(preprocess.prepare(frame, image_size, resize_mode))
        ok.append(i)
    bar.close()
    images = np.stack(out) if out else np.empty((0, image_size, image_size, 3), np.uint8)
    return images, ok


def load_images(fs: FileSet, image_size: int, resize_mode: str = "stretch", progress: bool = False) -> CaptionSet:
    """A FileSet decoded into a CaptionSet (unreadable images are skipped and counted)."""
    images, ok = read_images(fs.files, image_size, resize_mode, progress, f"loading {len(fs)} images")
    skipped = Counter(fs.skipped)
    bad = len(fs) - len(ok)
    if bad:
        skipped["unreadable image"] += bad
        warnings.warn(f"{fs.source}: skipped {bad} unreadable images", stacklevel=2)
    if not ok:
        raise DatasetError(f"{fs.source}: no usable record: none of its {len(fs)} images could be decoded")
    return CaptionSet(images, [fs.captions[i] for i in ok], fs.source, skipped, tuple(fs.files[i] for i in ok))


def load_captions(annotations: str | Path, images: str | Path | None = None, fmt: str | None = None,
                  image_size: int = 96, resize_mode: str = "stretch", max_images: int | None = None,
                  progress: bool = False, splits: str | Path | None = None, split: str | None = None) -> CaptionSet:
    """Load a caption file (COCO JSON / Flickr token file / CSV / JSONL) and its images.

    Image paths in the file are resolved against ``images`` (default: the file's own folder).  With
    ``splits`` and ``split``, only the images listed in SPLITS/SPLIT.txt, in that order.  ``fmt``
    ``flickr8k`` reads a directory laid out like the shared Flickr8k copy.
    """
    lay = layout(fmt or "auto", annotations, images, splits)
    return load_images(file_set(lay, split, max_images), image_size, resize_mode, progress)
