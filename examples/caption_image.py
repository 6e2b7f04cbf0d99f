"""Caption image files with the shipped int8 bundle (or your own).

    python examples/caption_image.py photo.jpg [more.png ...] [--bundle models/mine.velm] [--beam 1]

No picture at hand?  ``python examples/caption_image.py velm_edge/samples/*.jpg`` captions the photos that ship
with velm-edge; ``velm-edge synth --out scenes --count 3`` writes a few synthetic scenes.
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
    ap.add_argument("--beam", type=int, default=None,
                    help="beam width; 1 = greedy (default: what the bundle recommends)")
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
            # what the bundle's ImageNet classifier sees (photo bundle), as (word, score): act on these, not the text
            seen = [(t.word, round(t.score, 2)) for t in caption.tags if t.word and t.score >= 0.1]
            print(f"{path}: {caption.text}  (confidence {caption.confidence:.2f}, "
                  f"{caption.timings_ms['total']:.1f} ms)" + (f"  {seen}" if seen else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
