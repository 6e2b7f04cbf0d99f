"""Batched beams against row-by-row beams on the same photos: identical captions, and the invokes and time.

    python benchmarks/batched_beams.py [--bundle photo] [--split test] [--limit N] [--beam-size K]
                                       [--save FILE] [--compare FILE]

Captions the Flickr8k split's photos (../shared/data/flickr8k; skips when absent) twice in one run, with
``RuntimeOptions(batch_beams=False)`` (one invoke of the language graph per beam per step) and ``True``
(one invoke per step, where ``velm_edge.runtime.batching`` finds it sound and paying), at the bundle's
decoding or ``--beam-size``, and reports how many captions differ (tokens or score), the language graph's
invokes per caption and the median caption time of each.

``--save FILE`` writes the batched captions (photo -> tokens and score) as JSON, and ``--compare FILE`` counts
how many differ from such a file: run it once with ``PYTHONPATH`` at a worktree of an older commit and once
here to hold a change of the decoding code to the captions of before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.image_file import read_image
from velm_edge.runtime.options import RuntimeOptions

FLICKR8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="photo", help="shipped name or path (default: photo)")
    ap.add_argument("--split", default="test", help="Flickr8k split file under splits/ (default: test)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos of the split")
    ap.add_argument("--beam-size", type=int, default=None, help="beam width (default: the bundle's decoding)")
    ap.add_argument("--save", help="write the batched captions (tokens and score per photo) to this JSON file")
    ap.add_argument("--compare", help="count the batched captions that differ from this --save file")
    args = ap.parse_args()
    split = FLICKR8K / "splits" / f"{args.split}.txt"
    if not split.exists():
        print(f"skipped: {split} is absent (see ../shared/data/flickr8k/README)")
        return 0
    names = [line.strip() for line in split.read_text().splitlines() if line.strip()][:args.limit]
    images = [read_image(FLICKR8K / "images" / n) for n in names]
    results = {}
    for batched in (False, True):
        with Captioner.open(args.bundle, RuntimeOptions(batch_beams=batched)) as cap:
            options = cap.options.override(beam_size=args.beam_size)
            cap.caption(images[0], options)  # interpreters built (and the rows graph, when batched)
            invokes, times, captions = cap.language.invokes, [], []
            for i, image in enumerate(images):
                t = time.perf_counter()
                captions.append(cap.caption(image, options))
                times.append(time.perf_counter() - t)
                if (i + 1) % 200 == 0:
                    print(f"  batch_beams={batched}: {i + 1} of {len(images)}", file=sys.stderr)
            results[batched] = (captions, (cap.language.invokes - invokes) / len(images), np.median(times) * 1e3)
    differ = sum(a.tokens != b.tokens or a.score != b.score for a, b in zip(results[False][0], results[True][0]))
    print(f"{args.bundle}, Flickr8k {args.split} ({len(images)} photos), beam {options.beam_size}: "
          f"{differ} captions differ")
    for batched in (False, True):
        _, invokes, median = results[batched]
        print(f"  batch_beams={batched!s:5s}  {invokes:5.1f} language invokes a caption, "
              f"median caption {median:.1f} ms")
    batched = {n: [list(c.tokens), c.score] for n, c in zip(names, results[True][0])}
    if args.save:
        Path(args.save).write_text(json.dumps(batched))
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        changed = sum(before.get(n) != batched[n] for n in names)
        print(f"  against {args.compare}: {changed} of {len(names)} captions differ (tokens or score)")
        differ += changed
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
