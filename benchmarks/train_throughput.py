"""Benchmark: training throughput (images per second) of a VELM configuration on this machine.

    python benchmarks/train_throughput.py [--image-size 80] [--units 128] [--repeat 3] ...

Trains on random tensors fed through a ``keras.utils.PyDataset`` (as ``velm-convert train`` does),
one warm-up epoch and one timed epoch per repeat, each repeat in a fresh process.  Prints images/s
and the CPU split (user/system cores).  ``--no-malloc-fix`` leaves TensorFlow's malloc setting in
place (see velm_convert/malloc_tuning.py): on the 2-core CI machine that gave 120-160 images/s with up
to 45% system time, against 220-250 with the fix.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from velm_edge.tools.flags import add_flag


def measure(args) -> str:
    import math
    import os

    import keras
    import numpy as np

    from velm_convert.config import ModelConfig
    from velm_convert.malloc_tuning import KeepFreedMemory
    from velm_convert.model import build

    cfg = ModelConfig(vocab_size=48, image_size=args.image_size, units=args.units, feature_dim=args.feature_dim,
                      max_length=args.max_length, dropout=args.dropout)
    model = build(cfg)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = args.batch_size * args.batches
    rng = np.random.default_rng(0)
    x = {"image": rng.random((n, cfg.image_size, cfg.image_size, 3), dtype=np.float32),
         "tokens": rng.integers(0, 48, (n, cfg.steps)).astype("int32")}
    y = rng.integers(0, 48, (n, cfg.steps))
    bs = args.batch_size

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return math.ceil(n / bs)

        def __getitem__(self, i):
            return {k: v[i * bs:(i + 1) * bs] for k, v in x.items()}, y[i * bs:(i + 1) * bs]

    callbacks = [] if args.no_malloc_fix else [KeepFreedMemory()]
    model.fit(Batches(), epochs=1, verbose=0, callbacks=callbacks)
    t, c = time.perf_counter(), os.times()
    model.fit(Batches(), epochs=1, verbose=0, callbacks=callbacks)
    wall, c2 = time.perf_counter() - t, os.times()
    return f"{n / wall:.1f} {(c2.user - c.user) / wall:.2f} {(c2.system - c.system) / wall:.2f}"


def main() -> int:
    from velm_convert.config import ModelConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(ap, "--image-size", type=int, default=ModelConfig.image_size)
    ap.add_argument("--units", type=int, default=ModelConfig.units)
    add_flag(ap, "--feature-dim", type=int, default=ModelConfig.feature_dim)
    add_flag(ap, "--max-length", type=int, default=ModelConfig.max_length)
    ap.add_argument("--dropout", type=float, default=ModelConfig.dropout)
    add_flag(ap, "--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes to measure in")
    add_flag(ap, "--no-malloc-fix", action="store_true", help="keep TensorFlow's M_TRIM_THRESHOLD=128 KiB setting")
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once:
        print(measure(args))
        return 0
    rates, cpu = [], []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, __file__, "--once", *sys.argv[1:]], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rate, user, system = out.stdout.split()[-3:]
        rates.append(float(rate))
        cpu.append(f"{user}+{system}")
    print(f"images/s per process: {', '.join(f'{r:.0f}' for r in rates)}  (best {max(rates):.0f}); "
          f"CPU cores user+system: {', '.join(cpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
