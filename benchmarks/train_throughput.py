"""Benchmark: training throughput (images per second) of a VELM configuration on this machine.

    python benchmarks/train_throughput.py [--image_size 80] [--units 128] [--repeat 3] ...

Trains on random tensors (no data pipeline), one warm-up epoch and one timed epoch per repeat, each
repeat in a fresh process so thread-pool placement varies as it does between real runs.  On the
2-core CI machine the figure is bimodal (about 145 or 230-290 images/s for the default model, per
process), which is why the training benchmark reports its time and sample count with its quality.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def measure(args) -> float:
    import keras
    import numpy as np

    from convert.config import ModelConfig
    from convert.model import build

    cfg = ModelConfig(vocab_size=48, image_size=args.image_size, units=args.units, feature_dim=args.feature_dim,
                      max_length=args.max_length, dropout=args.dropout)
    model = build(cfg)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = args.batch_size * args.batches
    rng = np.random.default_rng(0)
    x = {"image": rng.random((n, cfg.image_size, cfg.image_size, 3), dtype=np.float32),
         "tokens": rng.integers(0, 48, (n, cfg.steps)).astype("int32")}
    y = rng.integers(0, 48, (n, cfg.steps))
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
    return n / (time.perf_counter() - t)


def main() -> int:
    from convert.config import ModelConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image_size", type=int, default=ModelConfig.image_size)
    ap.add_argument("--units", type=int, default=ModelConfig.units)
    ap.add_argument("--feature_dim", type=int, default=ModelConfig.feature_dim)
    ap.add_argument("--max_length", type=int, default=ModelConfig.max_length)
    ap.add_argument("--dropout", type=float, default=ModelConfig.dropout)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes to measure in")
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once:
        print(f"{measure(args):.1f}")
        return 0
    rates = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, __file__, "--once", *sys.argv[1:]], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rates.append(float(out.stdout.split()[-1]))
    print(f"images/s per process: {', '.join(f'{r:.0f}' for r in rates)}  (best {max(rates):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
