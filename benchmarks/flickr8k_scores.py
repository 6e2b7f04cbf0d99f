"""The Flickr8k table: a model's scores on the 1,000 test photos (5 references each) beside published results.

Rows: the float Keras model, its float32 bundle and its int8 bundle, each with greedy decoding and with the
int8 bundle's shipped decoding (its manifest's "decoding").  Bundles run through the device code
(``velm_edge.Captioner``), the Keras model through ``velm_convert.model.Velm``; all are scored by
``velm_convert.metrics`` (corpus BLEU-1..4, CIDEr-D; no Java).

    python benchmarks/flickr8k_scores.py runs/recipe-photo/model/model.keras \\
        --int8 velm_edge/models/photo.velm --float32 runs/photo-float32.velm --data ../shared/data/flickr8k
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from velm_convert import datasets, metrics
from velm_convert.model import Velm
from velm_edge.runtime import preprocess
from velm_edge.runtime.bundle import read_manifest
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.decode import DecodeOptions

PUBLISHED = [  # from the Flickr8k data README: the same 1,000 test images, 5 references each
    ("Karpathy and Fei-Fei 2015 (NeuralTalk)", 57.9, 38.3, 24.5, 16.0),
    ("Xu et al. 2015, Show, Attend and Tell (soft)", 67.0, 44.8, 29.9, 19.5),
    ("Xu et al. 2015, Show, Attend and Tell (hard)", 67.0, 45.7, 31.4, 21.3),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the float .keras model")
    ap.add_argument("--int8", required=True, help="its int8 bundle (its manifest's decoding is the shipped one)")
    ap.add_argument("--float32", help="its float32 bundle")
    ap.add_argument("--data", required=True, help="a Flickr8k directory (captions.csv, images/, splits/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    manifest = read_manifest(args.int8)
    shipped = DecodeOptions.recommended(manifest)
    pre = manifest["preprocess"]
    data = datasets.load_images(datasets.file_set(datasets.flickr8k_layout(args.data), args.split), pre["size"],
                                pre["resize"])
    decodings = {"greedy": DecodeOptions(), f"beam {shipped.beam_size} (shipped)": shipped}
    velm = Velm.load(args.model)
    rows = {}
    for label, options in decodings.items():
        t0 = time.monotonic()
        hyps = velm.caption(preprocess.to_float(data.images), dataclasses.replace(options, ground=0.0))
        rows[f"float Keras model, {label}"] = (metrics.score(hyps, data.captions), time.monotonic() - t0)
        for kind, path in (("float32 bundle", args.float32), ("int8 bundle", args.int8)):
            if path:
                t0 = time.monotonic()
                with Captioner.open(path) as cap:
                    hyps = [cap.caption_rgb(im, options).text for im in data.images]
                rows[f"{kind}, {label}"] = (metrics.score(hyps, data.captions), time.monotonic() - t0)
    print(f"{len(data)} images of {data.source}")
    print("| model | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (s, _) in rows.items():
        print(f"| {name} | " + " | ".join(f"{s[k] * 100:.1f}" for k in ("bleu1", "bleu2", "bleu3", "bleu4"))
              + f" | {s['cider']:.3f} |")
    for name, *bleu in PUBLISHED:
        print(f"| {name} | " + " | ".join(f"{b:.1f}" for b in bleu) + " | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {**s, "seconds": round(t, 1)} for k, (s, t) in rows.items()}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
