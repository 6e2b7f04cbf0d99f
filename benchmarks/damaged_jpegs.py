"""How many damaged JPEGs the service refuses before decoding, beside how many libjpeg warns about.

    python benchmarks/damaged_jpegs.py [--photos 60] [--damages 5] [--seed 7]

Takes photos from ../shared/data/coco-sample (skips when absent), damages each inside its image data in
four ways (1 KB overwritten with random bytes, 16 bytes overwritten, one byte replaced, one bit flipped)
and reports, per kind of damage, how many of the damaged files libjpeg decodes with a warning (OpenCV
prints it on stderr and returns an image, so the warning is read here from a redirected stderr) and how
many ``velm_edge.service.images.check_intact`` refuses. It also counts whole photos refused (there
should be none). The damage is random but seeded.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from velm_edge.errors import FrameError
from velm_edge.service import images

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-sample"
DAMAGES = ("1 KB overwritten", "16 bytes overwritten", "one byte replaced", "one bit flipped")


def libjpeg_warns(data: bytes) -> bool:
    """True when OpenCV's libjpeg prints a warning (or fails) decoding `data`."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as err:
        os.dup2(err.fileno(), 2)
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        return image is None or bool(err.read().strip())


def damage(data: bytes, how: str, rng: random.Random) -> bytes:
    """`data` with one damage of kind `how` inside its first scan's image data."""
    out = bytearray(data)
    sos = out.find(b"\xff\xda")
    first, end = sos + 2 + int.from_bytes(out[sos + 2:sos + 4], "big"), len(out) - 2
    if how == "1 KB overwritten":
        at = rng.randrange(first, end - 1024)
        out[at:at + 1024] = rng.randbytes(1024)
    elif how == "16 bytes overwritten":
        at = rng.randrange(first, end - 16)
        out[at:at + 16] = rng.randbytes(16)
    elif how == "one byte replaced":
        out[rng.randrange(first, end)] = rng.randrange(256)
    else:
        out[rng.randrange(first, end)] ^= 1 << rng.randrange(8)
    return bytes(out)


def refused(data: bytes) -> bool:
    try:
        images.check_intact(data, "jpeg")
    except FrameError:
        return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=60, help="coco-sample photos to damage (default 60)")
    parser.add_argument("--damages", type=int, default=5, help="damaged copies per photo and kind (default 5)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    paths = sorted(COCO.rglob("*.jpg"))[:args.photos]
    if not paths:
        print(f"skipped: no photos under {COCO} (see its README)")
        return 0
    rng = random.Random(args.seed)
    whole = [p.read_bytes() for p in paths]
    print(f"whole photos refused: {sum(refused(d) for d in whole)} of {len(whole)}")
    print(f"{'damage':22s} {'files':>6s} {'libjpeg warns':>14s} {'refused':>8s} {'refused, no warning':>20s}")
    for how in DAMAGES:
        warned = caught = caught_silent = 0
        for data in whole:
            for _ in range(args.damages):
                damaged = damage(data, how, rng)
                warns, refuses = libjpeg_warns(damaged), refused(damaged)
                warned += warns
                caught += refuses
                caught_silent += refuses and not warns
        print(f"{how:22s} {len(whole) * args.damages:6d} {warned:14d} {caught:8d} {caught_silent:20d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
