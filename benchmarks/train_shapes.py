"""Benchmark: train the shapes VELM (the synthetic camera's model) on 2 CPU cores, then score it on 500 held-out scenes.

    python benchmarks/train_shapes.py [--out runs/bench] [--minutes 20] [--epochs 6] [velm-convert train flags]

Prints data time, training time, and exact match / BLEU-4 / CIDEr-D on 500 scenes of the default
difficulty whose seeds no training or validation scene uses.  Figures go to OUT/benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from velm_convert import cli, datasets, metrics
from velm_convert.train import train
from velm_edge.runtime import preprocess
from velm_edge.tools.flags import add_flag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench", help="output directory (default: %(default)s)")
    add_flag(ap, "--eval-scenes", type=int, default=500, help="held-out scenes (default: %(default)s)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time limit (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=6,
                    help="epochs of the 60k scenes; the time limit usually ends training first (default: %(default)s)")
    args, rest = ap.parse_known_args(argv)
    cfg = cli.train_config_from_args(cli.train_parser().parse_args(
        ["--out", args.out, "--max-minutes", str(args.minutes), "--epochs", str(args.epochs), *rest]))
    t0 = time.monotonic()
    velm = train(cfg)
    wall = time.monotonic() - t0
    held_out = datasets.synthetic(args.eval_scenes, datasets.EVAL_SEED, cfg.synthetic_scenes())
    t1 = time.monotonic()
    scores = metrics.score(velm.caption(preprocess.to_float(held_out.images)), held_out.captions)
    result = {"data_seconds": velm.info["data_seconds"], "train_seconds": velm.info["train_seconds"],
              "wall_seconds": round(wall, 1), "eval_seconds": round(time.monotonic() - t1, 1),
              "epochs_run": velm.info["epochs_run"], "macs_per_caption": velm.info["macs"]["caption"],
              "parameters": velm.info["parameters"], "held_out": scores}
    Path(args.out, "benchmark.json").write_text(json.dumps(result, indent=2))
    print(metrics.table({f"float, {args.eval_scenes} held-out scenes": scores}))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
