"""Make docs/photos.png: real photographs captioned by the shipped photo bundle (the default), each caption drawn
under its photo by the project's own overlay, with the classifier's first tag that has a caption word in brackets,
and the detector's boxes drawn on the photo.
Only photos whose licence allows it: scikit-image's sample photos
(astronaut: NASA, public domain; chelsea, coffee: CC0 by Stefan van der Walt and Rachel Michaels; the motorcycle
from the Middlebury stereo set) and matplotlib's Grace Hopper portrait (US Navy, public domain).

    python docs/make_photos_picture.py [--out docs/photos.png]
"""

import argparse
import sys
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
from skimage import data

from velm_edge import Captioner
from velm_edge.sinks.overlay import draw_caption, draw_detections


def photos() -> dict[str, np.ndarray]:
    """name -> BGR photo."""
    rgb = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "motorcycle": data.stereo_motorcycle()[0],
           "coffee": data.coffee()}
    out = {name: cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for name, im in rgb.items()}
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        out["grace_hopper"] = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).with_name("photos.png")))
    args = ap.parse_args()
    tiles = []
    with Captioner.open() as cap:  # the shipped default: the photo bundle, with its recommended decoding
        for name, image in photos().items():
            caption = cap.caption(image)
            tag = next((t for t in caption.tags if t.word), None)
            text = caption.text + (f" [{tag.word} {tag.score:.2f}]" if tag else "")
            print(f"{name}: {text}")
            boxed = draw_detections(image.copy(), caption.detections)
            found = ", ".join(f"{d.label} {d.score:.2f}" for d in caption.detections)
            print(f"{'':{len(name)}s}  detections: {found}")
            tile = cv2.resize(boxed, (360, 270), interpolation=cv2.INTER_AREA)  # the grid's cell, captioned
            tiles.append(np.pad(draw_caption(tile, text), ((4, 4), (4, 4), (0, 0)), constant_values=255))
    sheet = np.concatenate(tiles, axis=1)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
