"""Project caption latency and captions/s on a Raspberry Pi 4, a Raspberry Pi 5 and a Coral Edge TPU.

    python benchmarks/project.py [BUNDLE] [--bench bench.json] [--images 200]

These are PROJECTIONS, not measurements: nobody ran velm-edge on those devices for these figures.
The method, every input printed with the result:

1. Measure on this machine (`velm-edge bench --json`): preprocess, vision graph, one decoder step, the
   Python glue, and the decoder steps per caption.
2. The vision graph is convolution work: its time on a target is its multiply-accumulates (counted
   from the .tflite, as `velm-edge info` reports them) divided by the target's effective int8 rate,
   taken from a published benchmark of an int8 CNN on that device (CITED below, with the arithmetic).
3. Everything else (one decoder step is only 0.45 M MACs, so it is per-call overhead; the resize;
   Python) is scaled by how much slower one target core is than one core here, estimated from the same
   published CNN rates per core against this machine's measured per-core vision rate.  Scalar Python
   code usually loses less than SIMD code on these cores, so this errs towards slow.
4. Edge TPU: the vision graph at the Edge TPU's published effective rate plus a published per-call
   cost of a small model over USB 3; the decoder steps run on the host CPU (a Pi 4), because a USB call
   per step would cost more than the step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from velm_edge import tflite_model

# Published figures (see README "Performance"): (MACs of the model, milliseconds, threads, source).
CITED = {
    "pi4": {
        "what": "Raspberry Pi 4 (Cortex-A72, 4 x 1.5 GHz)",
        "macs": 569e6, "ms": 40.30, "threads": 4,
        "source": "ncnn benchncnn mobilenet_int8 (MobileNet v1 224, 569 M MACs), 4 threads: 40.30 ms "
                  "(Tencent/ncnn issue 3485)",
    },
    "pi5": {
        "what": "Raspberry Pi 5 (Cortex-A76, 4 x 2.4 GHz)",
        "pi4_speedup": 82.7 / 16.9,
        "source": "TensorFlow Lite, SSD MobileNet v1: Raspberry Pi 4 82.7 ms, Raspberry Pi 5 16.9 ms "
                  "(aallan/benchmarking-ml-on-the-edge), applied to the Pi 4 rate",
    },
    "edgetpu": {
        "what": "Coral USB Accelerator on a Raspberry Pi 4 (image graph on the TPU)",
        "macs": 569e6, "ms": 2.2, "call_ms": 1.4,
        "source": "Coral Edge TPU benchmarks: MobileNet v1 2.2 ms (coral.ai/docs/edgetpu/benchmarks); a small "
                  "CNN on a Pi 4 + USB 3 accelerator: 1.4 ms per inference (EscVM/RPS_with_Edge_TPU), taken as "
                  "the per-call cost",
    },
}


def measure(bundle: str | None, images: int) -> dict:
    cmd = [sys.executable, "-m", "velm_edge.cli", "bench", "--images", str(images), "--cold_runs", "1", "--json"]
    out = subprocess.run(cmd + ([bundle] if bundle else []), capture_output=True, text=True, check=True).stdout
    return json.loads(out)["result"]


def project(bench: dict, macs: dict) -> dict:
    here_ms = {k: bench[k]["median"] for k in ("preprocess", "vision", "decode_step", "python_glue")}
    steps = bench["steps_per_caption"]
    here_rate = macs["vision"] / (here_ms["vision"] * 1e-3)  # MAC/s of one interpreter thread here
    pi4 = CITED["pi4"]
    pi4_rate = pi4["macs"] / (pi4["ms"] * 1e-3)
    rates = {"pi4": pi4_rate, "pi5": pi4_rate * CITED["pi5"]["pi4_speedup"]}
    out = {"here": {"vision_mac_per_s": here_rate, **here_ms, "steps": steps}}
    for name, rate in rates.items():
        slower = here_rate / (rate / pi4["threads"])  # one target core vs one core here (SIMD-bound work)
        parts = {"vision": macs["vision"] / rate * 1e3, "decode": steps * here_ms["decode_step"] * slower,
                 "preprocess": here_ms["preprocess"] * slower, "python_glue": here_ms["python_glue"] * slower}
        out[name] = {"core_slower_than_here": slower, "int8_mac_per_s": rate, **parts}
    tpu = CITED["edgetpu"]
    pi4_parts = out["pi4"]
    parts = {"vision": macs["vision"] / (tpu["macs"] / (tpu["ms"] * 1e-3)) * 1e3 + tpu["call_ms"],
             "decode": pi4_parts["decode"], "preprocess": pi4_parts["preprocess"],
             "python_glue": pi4_parts["python_glue"]}
    out["edgetpu"] = {"int8_mac_per_s": tpu["macs"] / (tpu["ms"] * 1e-3), **parts}
    for name in ("pi4", "pi5", "edgetpu"):
        total = sum(out[name][k] for k in ("vision", "decode", "preprocess", "python_glue"))
        out[name]["caption_ms"] = total
        out[name]["captions_per_s"] = 1e3 / total
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", help="bundle directory (default: the shipped one)")
    ap.add_argument("--bench", help="use this `velm-edge bench --json` output instead of measuring now")
    ap.add_argument("--images", type=int, default=200, help="frames for the measurement (default: %(default)s)")
    args = ap.parse_args(argv)
    bench = json.load(open(args.bench))["result"] if args.bench else measure(args.bundle, args.images)
    macs = {name: tflite_model.cost(tflite_model.read(Path(bench["bundle"], f"{name}.tflite").read_bytes()))["macs"]
            for name in ("vision", "language")}  # counted from the graphs themselves, as velm-edge info does
    p = project(bench, macs)
    h = p["here"]
    print(f"measured here ({bench['frame']} frames, {bench['runtime']['backend']}): vision {h['vision']:.2f} ms "
          f"= {h['vision_mac_per_s'] / 1e9:.1f} G MAC/s, decoder step {h['decode_step']:.3f} ms x {h['steps']:.1f}, "
          f"preprocess {h['preprocess']:.2f} ms, Python glue {h['python_glue']:.2f} ms")
    print("\nPROJECTED (not measured) per caption, int8 bundle, greedy, ms:\n")
    print("| target | vision graph | decoder steps | resize | Python | caption | captions/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("pi4", "pi5", "edgetpu"):
        r = p[name]
        print(f"| {CITED[name]['what']} | {r['vision']:.2f} | {r['decode']:.2f} | {r['preprocess']:.2f} | "
              f"{r['python_glue']:.2f} | {r['caption_ms']:.1f} | {r['captions_per_s']:.0f} |")
    print("\nsources:")
    for name in ("pi4", "pi5", "edgetpu"):
        print(f"  {name}: {CITED[name]['source']}")
    print(f"  one Pi 4 core is taken as {p['pi4']['core_slower_than_here']:.1f}x slower than one core here, a Pi 5 "
          f"core {p['pi5']['core_slower_than_here']:.1f}x (per-core CNN rates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
