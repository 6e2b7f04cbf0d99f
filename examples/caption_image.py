"""Caption image files with the shipped int8 bundle (or your own).

    python examples/caption_image.py photo.jpg [more.png ...] [--bundle models/mine.velm] [--beam 3]

No picture at hand?  ``velm-edge synth --out scenes --count 3`` writes a few synthetic scenes.
"""

import argparse
import sys

from velm_edge import Captioner, VelmError
from velm_edge.runtime.bundle import DEFAULT_BUNDLE
from velm_edge.runtime.image_file import read_image


def main() -> int:
    ap = argparse.ArgumentParser(description="Caption image files.")
    ap.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    ap.add_argument("--bundle", default=DEFAULT_BUNDLE, help="bundle directory (default: the shipped model)")
    ap.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy (default: 1)")
    args = ap.parse_args()

    failed = 0
    with Captioner.open(args.bundle) as captioner:
        for path in args.images:
            try:
                frame = read_image(path)  # upright (EXIF applied), grey or BGR, 8 or 16 bits: all accepted
            except VelmError as e:
                print(f"{path}: {e}", file=sys.stderr)
                failed += 1
                continue
            caption = captioner.caption(frame, beam_size=args.beam)
            print(f"{path}: {caption.text}  ({caption.timings_ms['total']:.1f} ms)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
