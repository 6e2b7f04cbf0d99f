"""Whole caption, vision and decode of this tree against another checkout, in alternating processes.

    git worktree add /tmp/before REV
    python benchmarks/caption_ab.py /tmp/before [--rounds 5] [--frames 100] [--bundle photo]

Each round runs one process per tree (``PYTHONPATH`` at the other checkout, then at this one), each captioning
bench's synthetic 640x480 frames twice at the bundle's shipped decoding and then greedily, with the default
runtime options of its own tree; the rounds alternate, so a VM whose speed drifts slows both alike.  Prints each
round and the medians over the rounds: whole caption, vision, decode, and beam decode over greedy decode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
import numpy as np
from velm_edge.runtime.captioner import Captioner
from velm_edge.tools.bench import frames
data = frames(int(sys.argv[1]))
out = {}
with Captioner.open(sys.argv[2]) as cap:
    for name, beam in (("shipped", None), ("greedy", 1)):
        for f in data[:3]:
            cap.caption(f, beam_size=beam)
        times = {"total": [], "vision": [], "decode": []}
        for _ in range(2):
            for f in data:
                t = cap.caption(f, beam_size=beam).timings_ms
                for k in times:
                    times[k].append(t[k])
        out[name] = {k: float(np.median(v)) for k, v in times.items()}
print(json.dumps(out))
"""


def one(tree: Path, frames: int, bundle: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run([sys.executable, "-c", CHILD, str(frames), bundle], env=env, capture_output=True,
                         text=True, check=True, cwd=tree)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", type=Path, help="the other checkout (a git worktree of an older commit)")
    ap.add_argument("--rounds", type=int, default=5, help="process pairs (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=100, help="frames a process captions twice (default: %(default)s)")
    ap.add_argument("--bundle", default="photo", help="shipped bundle name or path (default: %(default)s)")
    args = ap.parse_args(argv)
    trees = {"other": args.other.resolve(), "this": HERE}
    rows: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            rows[name].append(one(tree, args.frames, args.bundle))
        o, t = rows["other"][-1]["shipped"]["total"], rows["this"][-1]["shipped"]["total"]
        print(f"round {r + 1}: whole caption {o:.2f} -> {t:.2f} ms ({t / o:.0%})", file=sys.stderr)
    for name, tree in trees.items():
        shipped = {k: statistics.median(row["shipped"][k] for row in rows[name]) for k in ("total", "vision", "decode")}
        greedy = statistics.median(row["greedy"]["decode"] for row in rows[name])
        print(f"{name:5s} ({tree}): whole caption {shipped['total']:.2f} ms, vision {shipped['vision']:.2f} ms, "
              f"decode {shipped['decode']:.2f} ms, greedy decode {greedy:.2f} ms "
              f"(shipped decoding / greedy {shipped['decode'] / greedy:.2f}x)")
    ratio = (statistics.median(row["shipped"]["total"] for row in rows["this"])
             / statistics.median(row["shipped"]["total"] for row in rows["other"]))
    print(f"whole caption, this tree / the other: {ratio:.0%} (medians over {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
