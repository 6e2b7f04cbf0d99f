"""Beyond Flickr8k: a bundle's captions of everyday COCO photos and of the Flickr8k test split, in one table.

Every photo goes through the device code exactly as ``velm-edge caption`` does (the file decoded by
``velm_edge.runtime.image_file``, then ``Captioner.caption``).  Columns: BLEU-4 and CIDEr-D against the
5 human captions; mention precision, recall and F1 over COCO's 80 categories and the share of photos
whose subject is named (``velm_convert.mentions``: a photo shows a category when 2 of its 5 captions
name it); the precision and recall of saying "person"; for a bundle with a detector, the same for the
set of labels it detects (a row of its own); captions holding ``<unk>``; captions that repeat a word pair.
Beside them, the human row: one caption scored against the other four (the ceiling).

    python benchmarks/wider_world.py                          # the shipped photo bundle, its default decoding
    python benchmarks/wider_world.py --row 'greedy=beam_size=1' --row 'beam 3=beam_size=3'
    python benchmarks/wider_world.py --bundle runs/mine.velm --flickr8k ''   # coco-sample only

``--row LABEL=QUERY`` adds a row decoded with the bundle's options overridden by QUERY (the keys of
``POST /v1/caption``'s query, e.g. ``beam_size=1&ground=0``); without ``--row`` the bundle's own
decoding is the one row.  The photos are read from ``../shared/data`` (their terms forbid shipping them).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from velm_convert import datasets, metrics
from velm_convert.mentions import mention_scores, set_scores
from velm_edge.runtime.bundle import DEFAULT_BUNDLE
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.grounding import Nudge
from velm_edge.runtime.image_file import read_image
from velm_edge.runtime.tokenizer import UNK, normalize
from velm_edge.service.server import DECODE_KEYS
from velm_edge.specs import parse_query

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
COLUMNS = ("bleu4", "cider", "mention_precision", "mention_recall", "mention_f1", "subject_named", "unk", "stutter")


def coco_sample(root: Path) -> tuple[list[Path], list[list[str]]]:
    """coco-sample's photos and their 5 captions each (captions.csv: image,caption)."""
    refs: dict[str, list[str]] = defaultdict(list)
    with open(root / "captions.csv", newline="") as f:
        for row in csv.DictReader(f):
            refs[row["image"]].append(row["caption"])
    names = sorted(refs)
    return [root / "images" / n for n in names], [refs[n] for n in names]


def flickr8k_test(root: Path) -> tuple[list[Path], list[list[str]]]:
    fs = datasets.file_set(datasets.flickr8k_layout(root), "test")
    return list(fs.files), [list(c) for c in fs.captions]


def stutters(text: str) -> bool:
    """A caption that says the same two words twice ("a blue shirt and a blue shirt")."""
    words = normalize(text)
    pairs = list(zip(words, words[1:]))
    return len(pairs) != len(set(pairs))


def score(hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    s = metrics.score(hyps, refs)
    return {"bleu4": s["bleu4"], "cider": s["cider"], **mention_scores(hyps, refs),
            "unk": sum(UNK in h for h in hyps), "stutter": sum(stutters(h) for h in hyps)}


def human(refs: list[list[str]]) -> dict[str, float]:
    """The first caption of each photo against the other four (as the data README measures it)."""
    first, others = [r[0] for r in refs], [r[1:] for r in refs]
    s = metrics.score(first, others)
    return {"bleu4": s["bleu4"], "cider": s["cider"], **mention_scores(first, others),
            "unk": 0, "stutter": sum(stutters(h) for h in first)}


def caption_all(cap: Captioner, files: list[Path], options) -> tuple[list[str], list[dict], list[set[str]], float]:
    """Every photo's caption, tags and detected labels, and the mean ms a photo."""
    texts, tags, labels, t0 = [], [], [], time.perf_counter()
    for path in files:
        c = cap.caption(read_image(path), options)
        texts.append(c.text)
        tags.append(c.to_json().get("tags", []))
        labels.append({d.label for d in c.detections})
    return texts, tags, labels, (time.perf_counter() - t0) / max(1, len(files)) * 1e3


def time_against(bundle: str, other: str, files: list[Path], rounds: int = 3) -> dict:
    """Median caption time of two bundles over the same photos, alternating, after one warm-up pass each."""
    frames = [read_image(p) for p in files]
    times: dict[str, list[float]] = {bundle: [], other: []}
    with Captioner.open(bundle) as a, Captioner.open(other) as b:
        for cap in (a, b):
            cap.caption(frames[0])
        for _ in range(rounds):
            for frame in frames:
                for path, cap in ((bundle, a), (other, b)):
                    t0 = time.perf_counter()
                    cap.caption(frame)
                    times[path].append((time.perf_counter() - t0) * 1e3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    mean = {k: float(np.mean(v)) for k, v in times.items()}
    print(f"caption time on {len(frames)} coco-sample photos x {rounds}, alternating: {bundle} median "
          f"{med[bundle]:.2f} ms (mean {mean[bundle]:.2f}), {other} median {med[other]:.2f} ms (mean "
          f"{mean[other]:.2f}); {bundle} / {other} = {med[bundle] / med[other]:.3f} (median), "
          f"{mean[bundle] / mean[other]:.3f} (mean)")
    return {"median_ms": med, "mean_ms": mean}


def fmt(row: dict) -> str:
    text = "" if "bleu4" not in row else f"{row['bleu4'] * 100:.1f} | {row['cider']:.3f} | "
    return (f"{text or '| | '}{row['mention_precision']:.2f} / {row['mention_recall']:.2f} / "
            f"**{row['mention_f1']:.2f}** | "
            f"{row['subject_named']:.0%} | {row['person_precision']:.2f} / {row['person_recall']:.2f} | "
            f"{row.get('unk', '')} | {row.get('stutter', '')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="the bundle (default: the shipped photo bundle)")
    ap.add_argument("--row", action="append", default=[], metavar="LABEL=QUERY",
                    help="a row with these decoding options over the bundle's (repeatable)")
    ap.add_argument("--coco", default=str(DATA / "coco-sample"), help="coco-sample directory ('' to skip)")
    ap.add_argument("--flickr8k", default=str(DATA / "flickr8k"), help="Flickr8k directory ('' to skip)")
    ap.add_argument("--examples", type=int, default=0, help="print this many coco-sample captions per row")
    ap.add_argument("--nudge", action="append", default=[], metavar="BOOST,PENALTY",
                    help="grounding strengths to compare (runtime.grounding.Nudge; repeatable): every row is run "
                         "with each")
    ap.add_argument("--time-against", metavar="OTHER",
                    help="also time --bundle against OTHER on the coco-sample photos, alternating photo by photo in "
                         "one run, each bundle with its own decoding (median ms per caption, and the ratio)")
    ap.add_argument("--json", help="also write every figure and caption here")
    args = ap.parse_args()

    sets = {}
    for name, root, reader in (("coco-sample", args.coco, coco_sample), ("Flickr8k test", args.flickr8k,
                                                                         flickr8k_test)):
        if root and (Path(root) / "captions.csv").is_file():
            sets[name] = reader(Path(root))
        elif root:
            print(f"{name}: no captions.csv under {root}; skipped")
    if not sets:
        raise SystemExit("no evaluation set found: pass --coco and/or --flickr8k")
    out: dict = {"bundle": args.bundle, "rows": {}}
    with Captioner.open(args.bundle) as cap:
        rows = [(label, parse_query(f"--row {spec}", query, DECODE_KEYS))
                for spec in (args.row or ["bundle's decoding="]) for label, _, query in [spec.partition("=")]]
        nudges = [Nudge(*map(float, n.split(","))) for n in args.nudge] or [None]
        rows = [(label if n is None else f"{label}, boost {n.boost:g} penalty {n.rival_penalty:g}", given, n)
                for label, given in rows for n in nudges]
        for label, given, nudge in rows:
            if nudge is not None and cap.words is not None:
                cap.words.nudge = nudge
            options = cap.options.override(**given)
            for set_name, (files, refs) in sets.items():
                texts, tags, labels, ms = caption_all(cap, files, options)
                s = {**score(texts, refs), "ms_per_photo": ms}
                out["rows"][f"{label} | {set_name}"] = {**s, "captions": dict(zip(map(str, files), texts)),
                                                       "tags": tags, "detections": [sorted(x) for x in labels]}
                print(f"| {label} | {set_name} | {fmt(s)} | {ms:.0f} |", flush=True)
                if cap.bundle.decoding is not None and cap.detection.detect:
                    d = set_scores(labels, refs)
                    out["rows"][f"{label}, detections alone | {set_name}"] = d
                    print(f"| {label}, the detections alone | {set_name} | {fmt(d)} | |", flush=True)
                if set_name == "coco-sample":
                    for path, text in list(zip(files, texts))[:args.examples]:
                        print(f"    {path.name}: {text}")
    if args.time_against and "coco-sample" in sets:
        out["timing"] = time_against(args.bundle, args.time_against, sets["coco-sample"][0])
    for set_name, (_, refs) in sets.items():
        h = human(refs)
        out["rows"][f"human | {set_name}"] = h
        print(f"| one human caption vs the other four | {set_name} | {fmt(h)} | |")
    print("columns: decoding | set | BLEU-4 | CIDEr-D | mention P / R / F1 | subject named | person P / R | captions "
          "with <unk> | captions repeating a word pair | ms per photo")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
