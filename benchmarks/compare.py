"""Benchmark: the same frames captioned by the Keras model in TensorFlow, the float32 bundle and the int8 bundle.

    python benchmarks/compare.py --model MODEL.keras [--int8 BUNDLE] [--float32 BUNDLE]
                                 [--images 100] [--out runs/compare]

Every engine captions the same synthetic 640x480 BGR frames one at a time (what a camera loop does),
greedy, after a few warm-up captions.  Bundles run on every interpreter package that is installed
(ai-edge-litert, tflite-runtime, tensorflow.lite).  Prints median / p95 milliseconds per caption,
captions per second, speed ratios against the int8 bundle, how many captions agree with the Keras
model, and the interpreter/glue split; writes OUT/compare.json and OUT/compare.png.  Without
--float32, the float32 bundle is exported from --model into OUT (once).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from velm_edge.runtime import preprocess
from velm_edge.runtime.bundle import DEFAULT_BUNDLE
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.tools import bench

PACKAGES = {"ai_edge_litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter",
            "tensorflow": "tensorflow"}


def keras_engine(model_path: str, frames: list[np.ndarray], warmup: int) -> tuple[list[str], list[float]]:
    from velm_convert.model import Velm

    velm = Velm.load(model_path)
    size, mode = velm.config.image_size, velm.resize_mode

    def one(frame):
        return velm.caption(preprocess.to_float(preprocess.prepare(frame, size, mode))[None])[0]

    for f in frames[:warmup]:
        one(f)
    texts, ms = [], []
    for f in frames:
        t = time.perf_counter()
        texts.append(one(f))
        ms.append((time.perf_counter() - t) * 1e3)
    return texts, ms


def bundle_engine(path: str, backend: str, frames: list[np.ndarray], warmup: int) -> tuple[list[str], dict]:
    with Captioner.open(path, RuntimeOptions(backend=backend)) as cap:
        stats = bench.measure(cap, frames, warmup=warmup)
        texts = [cap.caption(f).text for f in frames]
    return texts, stats


def float32_bundle(model: str, out: Path) -> Path:
    path = out / "float32.velm"
    if not (path / "manifest.json").is_file():
        from velm_convert import datasets
        from velm_convert.export import export
        from velm_convert.model import Velm
        from velm_edge.synth.scenes import SceneConfig

        velm = Velm.load(model)
        calib = datasets.synthetic(8, datasets.CALIB_SEED, SceneConfig(size=velm.config.image_size), progress=False)
        export(velm, path, "float32", calib, overwrite=True, progress=False)
    return path


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.2), dpi=100)
    names = [r["engine"] for r in rows][::-1]
    ms = [r["median_ms"] for r in rows][::-1]
    bars = ax.barh(names, ms, color=["#4477aa" if "int8" in n else "#bbbbbb" for n in names])
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per caption (median, log scale; lower is faster)")
    for b, v in zip(bars, ms):
        ax.text(v * 1.05, b.get_y() + b.get_height() / 2, f"{v:.2f} ms", va="center", fontsize=8)
    ax.set_title("One caption from a 640x480 frame, 2-core x86-64")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True,
                    help="the Keras model the bundles were exported from (velm-convert recipe shapes writes one)")
    ap.add_argument("--int8", default=str(DEFAULT_BUNDLE), help="int8 bundle (default: the shipped one)")
    ap.add_argument("--float32", default=None, help="float32 bundle (default: exported from --model into --out)")
    ap.add_argument("--images", type=int, default=100, help="frames (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed captions per engine (default: %(default)s)")
    ap.add_argument("--out", default="runs/compare", help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = bench.frames(args.images)
    f32 = args.float32 or str(float32_bundle(args.model, out))

    ref_texts, ref_ms = keras_engine(args.model, frames, args.warmup)
    rows = [{"engine": "Keras float (TensorFlow)", **bench.stats(ref_ms), "agree": 1.0}]
    for name, module in PACKAGES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"({name} is not installed: skipped)")
            continue
        for precision, path in (("int8", args.int8), ("float32", f32)):
            texts, s = bundle_engine(path, name, frames, args.warmup)
            rows.append({"engine": f"{precision} bundle ({name})", **s["caption"], "agree":
                         float(np.mean([a == b for a, b in zip(texts, ref_texts)])),
                         "interpreter_ms": s["interpreter"]["median"], "glue_share": s["glue_share"]})
    base = next(r["median"] for r in rows if r["engine"] == "int8 bundle (ai_edge_litert)")
    for r in rows:
        r["median_ms"], r["p95_ms"] = r.pop("median"), r.pop("p95")
        r["captions_per_s"] = round(1e3 / r["median_ms"], 1)
        r["int8_speedup"] = round(r["median_ms"] / base, 2)
    print(f"{args.images} frames of 640x480, greedy, one caption at a time")
    print(f"{'engine':34s} {'median ms':>10s} {'p95 ms':>8s} {'caps/s':>8s} {'int8 is x faster':>17s} "
          f"{'same caption as Keras':>22s} {'glue':>6s}")
    for r in rows:
        glue = f"{100 * r['glue_share']:.0f}%" if "glue_share" in r else ""
        print(f"{r['engine']:34s} {r['median_ms']:10.3f} {r['p95_ms']:8.3f} {r['captions_per_s']:8.1f} "
              f"{r['int8_speedup']:17.2f} {100 * r['agree']:21.1f}% {glue:>6s}")
    (out / "compare.json").write_text(json.dumps({"images": args.images, "rows": rows}, indent=2))
    chart(rows, out / "compare.png")
    print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
