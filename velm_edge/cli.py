"""``velm-edge``: the device command line.

Today it writes synthetic scenes (a ready-made CSV caption set, or frames to try a model on);
the camera, caption and benchmark commands arrive with the device runtime.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from velm_edge import __version__, scenes


def cmd_synth(args) -> int:
    import cv2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = scenes.SceneConfig(size=args.size)
    rows = []
    if args.animated:
        cam = scenes.AnimatedScenes(seed=args.seed, fps=args.fps, hold_s=args.hold_s, cfg=cfg)
        frames = (cam.frame(i) for i in range(args.count))
    else:
        frames = (scenes.generate(args.seed + i, cfg) for i in range(args.count))
    for i, (img, caption) in enumerate(frames):
        name = f"scene_{i:06d}.{args.format}"
        if not cv2.imwrite(str(out / name), img):
            print(f"velm-edge synth: error: could not write {out / name}", file=sys.stderr)
            return 1
        rows.append((name, caption))
    with open(out / "captions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows(rows)
    print(f"wrote {len(rows)} images and {out / 'captions.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velm-edge", description="Live, offline image captions on edge devices.")
    parser.add_argument("--version", action="version", version=f"velm-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    sp = sub.add_parser("synth", formatter_class=fmt, help="write synthetic scenes and their captions",
                        description="Write procedurally generated scenes as image files plus captions.csv "
                                    "(columns image, caption): a caption set that 'velm-convert train --dataset "
                                    "csv' reads, or frames to try a model on.")
    sp.add_argument("--out", required=True, help="output folder (created)")
    sp.add_argument("--count", type=int, default=100, help="number of images")
    sp.add_argument("--seed", type=int, default=0, help="first seed (scenes) or camera seed (--animated)")
    sp.add_argument("--size", type=int, default=96, help="image side in pixels")
    sp.add_argument("--format", choices=("png", "jpg"), default="png", help="image file format")
    sp.add_argument("--animated", action="store_true", help="consecutive frames of the animated synthetic camera")
    sp.add_argument("--fps", type=float, default=15.0, help="frame rate of the animated camera")
    sp.add_argument("--hold_s", type=float, default=3.0, help="seconds each animated layout holds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"synth": cmd_synth}[args.command](args)
    except ValueError as e:
        print(f"velm-edge {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
