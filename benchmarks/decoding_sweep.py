"""Choose the shipped decoding by measurement: BLEU-1..4 and CIDEr-D of a frozen-backbone model's captions on
a held-out split for several beam widths and length penalties (float model, cached backbone features).

    python benchmarks/decoding_sweep.py runs/photo/model/model.keras --data ../shared/data/flickr8k --split dev

Uses the dev split by default so the test split stays untouched by the choice.
"""

from __future__ import annotations

import argparse
import time

from velm_convert import datasets, metrics
from velm_convert.config import TrainConfig
from velm_convert.model import Velm, build_on_features, transfer_head
from velm_convert.train_cached import backbone_encoder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a .keras model trained on a pretrained backbone")
    ap.add_argument("--data", required=True, help="a Flickr8k directory (captions.csv, images/, splits/)")
    ap.add_argument("--split", default="dev", help="split to score (default: dev)")
    ap.add_argument("--beams", default="1,2,3,5", help="beam widths (default: 1,2,3,5)")
    ap.add_argument("--penalties", default="0,0.5,1", help="length penalties for beams > 1 (default: 0,0.5,1)")
    args = ap.parse_args()

    velm = Velm.load(args.model)
    tc = velm.info.get("train_config", {})
    cfg = TrainConfig(backbone=velm.config.backbone, image_size=velm.config.image_size,
                      resize_mode=velm.resize_mode, feature_cache=tc.get("feature_cache"))
    net, cache = backbone_encoder(cfg)
    fs = datasets.file_set(datasets.flickr8k_layout(args.data), args.split)
    feats, ok = cache.features(fs.files, lambda x: net.predict(x, batch_size=32, verbose=0))
    refs = [fs.captions[i] for i in ok]
    head = build_on_features(velm.config, feats.shape[1])
    transfer_head(velm.model, head)
    float_head = Velm(head, velm.vocab, velm.config)
    print(f"{len(ok)} images of {fs.source}")
    print("| beam | length penalty | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D | mean words | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for beam in (int(b) for b in args.beams.split(",")):
        for penalty in ([0.0] if beam == 1 else [float(p) for p in args.penalties.split(",")]):
            t0 = time.monotonic()
            hyps = float_head.caption(feats, beam, penalty)
            s = metrics.score(hyps, refs)
            words = sum(len(h.split()) for h in hyps) / len(hyps)
            print(f"| {beam} | {penalty:g} | " + " | ".join(f"{s[k] * 100:.1f}" for k in
                                                             ("bleu1", "bleu2", "bleu3", "bleu4"))
                  + f" | {s['cider']:.3f} | {words:.1f} | {time.monotonic() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
