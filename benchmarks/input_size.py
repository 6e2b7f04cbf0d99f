"""Input size against quality and cost: the photo recipe's training at several image sizes, scored on Flickr8k.

For each size the photo recipe's own training command runs with only ``--image-size`` changed (same seed,
epochs and head), then the float model captions the test split from cached features, greedy and with
beam search 3, and the vision graph's multiply-accumulates are counted.

    python benchmarks/input_size.py --data ../shared/data/flickr8k --sizes 224,192,160 --out runs/sizes

Training runs are kept in OUT/SIZE/ and reused when they are already there.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from velm_convert import cli, datasets, metrics, recipe
from velm_convert.config import TrainConfig
from velm_convert.model import Velm, build_on_features, count_macs, transfer_head
from velm_convert.train_cached import backbone_encoder


def train_args(size: int, data: str, out: Path) -> list[str]:
    args = list(recipe.RECIPES["photo"].commands(out, "photo", data)[0])
    args[args.index("--image-size") + 1] = str(size)
    args[args.index("--out") + 1] = str(out)
    return args + ["--no-progress"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a Flickr8k directory (captions.csv, images/, splits/)")
    ap.add_argument("--sizes", default="224,192,160")
    ap.add_argument("--out", default="runs/sizes")
    args = ap.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        run = Path(args.out) / str(size)
        if not (run / "model.keras").is_file():
            print(f"training at {size}x{size}: velm-convert {' '.join(train_args(size, args.data, run))}", flush=True)
            if cli.main(train_args(size, args.data, run)):
                return 1
        velm = Velm.load(run / "model.keras")
        info = json.loads((run / "train.json").read_text())
        cfg = TrainConfig(backbone=velm.config.backbone, image_size=size)
        net, cache = backbone_encoder(cfg)
        fs = datasets.file_set(datasets.flickr8k_layout(args.data), "test")
        feats, ok = cache.features(fs.files, functools.partial(net.predict, batch_size=32, verbose=0))
        head = build_on_features(velm.config, feats.shape[1])
        transfer_head(velm.model, head)
        model = Velm(head, velm.vocab, velm.config)
        refs = [fs.captions[i] for i in ok]
        greedy = metrics.score(model.caption(feats), refs)
        beam = metrics.score(model.caption(feats, 3), refs)
        macs = count_macs(velm.model, velm.config)
        rows.append({"size": size, "vision_macs": macs["vision"], "dev_bleu4": info["val_metrics"]["bleu4"],
                     "test_greedy": greedy, "test_beam3": beam, "train_seconds": info["train_seconds"]})
        print(json.dumps(rows[-1]), flush=True)
    print("| input | vision graph MACs | dev BLEU-4 (greedy) | test BLEU-4 greedy | test BLEU-4 beam 3 "
          "| test CIDEr-D beam 3 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['vision_macs'] / 1e6:.0f} M | {r['dev_bleu4'] * 100:.1f} | "
              f"{r['test_greedy']['bleu4'] * 100:.1f} | {r['test_beam3']['bleu4'] * 100:.1f} | "
              f"{r['test_beam3']['cider']:.3f} |")
    (Path(args.out) / "sizes.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
