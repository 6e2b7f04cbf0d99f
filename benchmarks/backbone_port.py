"""Prove the EfficientNet-Lite0 port on real photos: the Keras backbone with its ImageNet head against the
independent numpy forward pass of the same weights (``velm_convert.efficientnet_reference``), top-1 and logits.

    python benchmarks/backbone_port.py [--flickr8k ../shared/data/flickr8k --count 20]

Photos: the package photos of the tests (scikit-image, matplotlib) and, when given, the first COUNT photos of
the Flickr8k test split (read from the local copy, never stored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import efficientnet_reference  # benchmarks/efficientnet_reference.py, beside this file
import matplotlib.cbook
import numpy as np
from skimage import data

from velm_convert import datasets, efficientnet_lite
from velm_edge.runtime import preprocess
from velm_edge.runtime.image_file import read_image


def photos(flickr8k: str | None, count: int) -> dict[str, np.ndarray]:
    """name -> RGB uint8 at 224x224 (stretched, as the model sees them)."""
    rgb = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
           "rocket": data.rocket(), "motorcycle": data.stereo_motorcycle()[0],
           "camera": cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB)}
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb["grace_hopper"] = cv2.cvtColor(cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR),
                                           cv2.COLOR_BGR2RGB)
    out = {k: preprocess.prepare(v, 224, rgb=True) for k, v in rgb.items()}
    if flickr8k:
        fs = datasets.file_set(datasets.flickr8k_layout(flickr8k), "test", count)
        out.update({Path(f).name: preprocess.prepare(read_image(f), 224) for f in fs.files})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flickr8k", help="a Flickr8k directory, for more photos")
    ap.add_argument("--count", type=int, default=20, help="Flickr8k test photos to add (default: %(default)s)")
    args = ap.parse_args()
    sd = efficientnet_lite.state_dict()
    keras_model = efficientnet_lite.backbone(224, include_top=True)
    same, worst = 0, 0.0
    images = photos(args.flickr8k, args.count)
    print("| photo | top-1 numpy | top-1 Keras | p (numpy) | max abs logit difference |")
    print("|---|---:|---:|---:|---:|")
    for name, image in images.items():
        ref = efficientnet_reference.forward(sd, image)
        got = np.asarray(keras_model(image[None].astype(np.float32) / 255.0))[0]
        p = np.exp(ref - ref.max())
        p /= p.sum()
        diff = float(np.abs(got - ref).max())
        same += int(got.argmax() == ref.argmax())
        worst = max(worst, diff)
        print(f"| {name} | {ref.argmax()} | {got.argmax()} | {p.max():.2f} | {diff:.2e} |")
    print(f"\nidentical top-1 on {same} of {len(images)} photos; largest logit difference {worst:.2e}")
    return 0 if same == len(images) else 1


if __name__ == "__main__":
    raise SystemExit(main())
