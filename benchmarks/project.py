"""Project caption latency and captions/s on a Raspberry Pi 4, a Raspberry Pi 5 and a Coral Edge TPU.

    python benchmarks/project.py [BUNDLE] [--bench bench.json] [--images 200]

These are PROJECTIONS, not measurements: nobody ran velm-edge on those devices for these figures.
The method, every input printed with the result:

1. Measure on this machine (`velm-edge bench --json`): preprocess, vision graph, the interpreter's time of one
   decoder invoke, the Python glue (everything outside the interpreter and OpenCV: lookups, copies, the beam
   search's bookkeeping), and the decoder invokes per caption.
2. The vision graph (and the detector graph, where the bundle has one) is convolution work: its time on a target
   is its multiply-accumulates (counted
   from the .tflite, as `velm-edge info` reports them) divided by the target's effective int8 rate,
   taken from a published benchmark of an int8 CNN on that device (CITED below, with the arithmetic).
3. The decoder invokes and the resize are scaled by how much slower one target core is than one core here,
   estimated from the same published CNN rates per core against this machine's measured per-core vision rate
   (an int8 SIMD ratio: this errs towards slow for the resize, whose uint8 SIMD loses less).  The Python glue
   is scaled by how much slower the target runs plain Python (PYTHON below: the Benchmarks Game's n-body
   program, published on a Pi 4 and run here with benchmarks/nbody.py), not by the SIMD ratio: an interpreter
   loses far less on a Cortex-A72 than VNNI int8 kernels do.
4. Edge TPU: the vision graph at the Edge TPU's published effective rate plus a published per-call
   cost of a small model over USB 3; the decoder steps run on the host CPU (a Pi 4), because a USB call
   per step would cost more than the step.

Each decoder invoke also streams the language graph's weights (3.9 MB for the photo bundle) from memory:
a Pi 4's Cortex-A72 has 1 MB of L2 and a Pi 5's Cortex-A76 512 KB per core plus 2 MB of L3, so they do
not stay in cache between invokes.  The MEMORY bound of the decoder is invokes x weight bytes / the
target's published memory bandwidth (BANDWIDTH below: copy rates, which count each byte once; a read-only
stream is at least that fast, so this bound errs towards slow).  The decoder's projected time is the
larger of the two bounds, and the table says which one it was.  A beam search that runs its beams as one
batch (velm_edge.runtime.batching) makes one invoke per step instead of one per beam, which is what this
bound rewards.

A second, independent estimate of the vision graph, from PEAK figures and this machine's EFFICIENCY:

5. Measure this core's peak int8 multiply-accumulate rate (benchmarks/peak_int8.c, compiled with `cc`, the
   instruction the int8 kernels use here) and divide the vision graph's measured rate by it: the
   fraction of peak the interpreter reaches on this graph.
6. The target core's peak is its clock times the int8 multiply-accumulates its SIMD units finish per
   cycle, from Arm's optimization guides (PEAK below).  The vision graph runs there at the same
   fraction of peak, on one thread.  The other parts are as in 3.  The Edge TPU's efficiency cannot be
   measured here; it is taken from Coral's published MobileNet v1 time against its 4 TOPS, so for the
   Edge TPU the two estimates coincide by construction.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from velm_edge.tools import tflite_model
from velm_edge.tools.flags import add_flag

TARGETS = ("pi4", "pi5", "edgetpu")
# Published figures (see docs/performance.md): (MACs of the model, milliseconds, threads, source).
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


# Published time of the Benchmarks Game's n-body program (benchmarks/nbody.py) in CPython on a target, per step.
PYTHON = {
    "pi4": {"s_per_step": 158.263 / 5e6,
            "source": "n-body in Python, 5,000,000 steps, Raspberry Pi 4 Model B at 1.5 GHz (performance governor): "
                      "158.263 s (chaitanyamehta.github.io, 'Performance Analysis of Languages on Raspberry Pi'); "
                      "its Python release is not given, and CPython 3.11 (Raspberry Pi OS today) is faster than "
                      "older ones, so this errs towards slow"},
}
PYTHON["pi5"] = {"s_per_step": PYTHON["pi4"]["s_per_step"] / (2.4 / 1.5),
                 "source": "the Pi 4's n-body time scaled by clock (2.4 against 1.5 GHz); a Cortex-A76 also does "
                           "more per clock than a Cortex-A72, so this errs towards slow"}
PYTHON["edgetpu"] = {**PYTHON["pi4"], "source": "Python runs on the host Pi 4: " + PYTHON["pi4"]["source"]}
NBODY = Path(__file__).with_name("nbody.py")

# Published memory bandwidth (bytes/s): what a decoder invoke's weights stream at when they are not in cache.
BANDWIDTH = {
    "pi4": {"bytes_per_s": 5.53e9,
            "source": "STREAM (C, gcc -O3) on a Raspberry Pi 4: Copy 5527.3 MB/s, Scale 5561.9 MB/s "
                      "(sci-pi.org.uk/bench/stream.html)"},
    "pi5": {"bytes_per_s": 4.87e9,
            "source": "tinymembench on a Raspberry Pi 5 model B: C copy 4870.3 MB/s, C copy backwards 5676.0 MB/s "
                      "(geerlingguy/sbc-reviews issue 21); the lower figure"},
}
BANDWIDTH["edgetpu"] = {**BANDWIDTH["pi4"],
                        "source": "the decoder runs on the host Pi 4: " + BANDWIDTH["pi4"]["source"]}

# Peak int8 multiply-accumulates per second, per core for the CPUs.
PEAK = {
    "pi4": {
        "mac_per_s": 1.5e9 * 8,
        "source": "Cortex-A72 at 1.5 GHz x 8 int8 MACs per cycle: no int8 dot product, and ASIMD integer "
                  "multiply-accumulate (SMLAL/SMLAL2, 8 int8 products per instruction) issues on the F0 pipe "
                  "only, one per cycle (Arm Cortex-A72 Software Optimization Guide, UAN 0016A)",
    },
    "pi5": {
        "mac_per_s": 2.4e9 * 32,
        "source": "Cortex-A76 at 2.4 GHz x 32 int8 MACs per cycle: SDOT (16 int8 products per instruction) on "
                  "both ASIMD pipes, two per cycle (Arm Cortex-A76 Software Optimization Guide)",
    },
    "edgetpu": {
        "mac_per_s": 2e12,
        "source": "Edge TPU: 4 TOPS = 2 T MAC/s (Coral USB Accelerator datasheet); efficiency from Coral's "
                  "MobileNet v1 2.2 ms, as in the first estimate",
    },
}
PEAK_C = Path(__file__).with_name("peak_int8.c")


def measure_peak(runs: int = 3) -> float:
    """This core's peak int8 multiply-accumulates per second (best of ``runs``), from benchmarks/peak_int8.c."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if platform.machine() not in ("x86_64", "AMD64") or cc is None:
        raise SystemExit(f"cannot measure the peak int8 rate here ({platform.machine()}, C compiler: {cc}); "
                         f"pass --peak G_MAC_PER_S")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp, "peak_int8")
        subprocess.run([cc, "-O3", "-mavx2", str(PEAK_C), "-o", str(exe)], check=True)
        return max(float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()[0])
                   for _ in range(runs))


def measure_python(steps: int = 300_000, runs: int = 3) -> float:
    """Seconds per n-body step of this Python here (best of ``runs``), from benchmarks/nbody.py."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(NBODY), str(steps)], capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best / steps


def measure(bundle: str | None, images: int, beam_size: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "velm_edge.tools.cli", "bench", "--images", str(images), "--cold-runs", "1", "--json",
           "--threads", "1"]  # one interpreter thread: the per-core rate both estimates start from
    if beam_size is not None:  # else the bundle's recommended decoding
        cmd += ["--beam-size", str(beam_size)]
    out = subprocess.run(cmd + ([bundle] if bundle else []), capture_output=True, text=True, check=True).stdout
    return json.loads(out)["result"]


def project(bench: dict, macs: dict, language_weight_bytes: float = 0.0,
            python_s_per_step: float | None = None) -> dict:
    """``bench["steps_per_caption"]`` is the language graph's invokes per caption (one per step and beam row by
    row, one per step with batched beams); ``language_weight_bytes`` the constant bytes one invoke streams;
    ``python_s_per_step`` this machine's n-body time per step (None: Python scaled like the rest, by the SIMD
    ratio, as before PYTHON was cited)."""
    if "decode_invoke" not in bench:
        raise SystemExit("this bench output has no decode_invoke (the interpreter's time of one decoder invoke): "
                         "it is from an older velm-edge bench; run `velm-edge bench --json` again")
    here_ms = {k: bench[k]["median"] for k in ("preprocess", "vision", "decode_invoke", "python_glue")}
    steps = bench["steps_per_caption"]
    here_rate = macs["vision"] / (here_ms["vision"] * 1e-3)  # MAC/s of one interpreter thread here
    pi4 = CITED["pi4"]
    pi4_rate = pi4["macs"] / (pi4["ms"] * 1e-3)
    rates = {"pi4": pi4_rate, "pi5": pi4_rate * CITED["pi5"]["pi4_speedup"]}
    out = {"here": {"vision_mac_per_s": here_rate, **here_ms, "steps": steps, "python_s_per_step": python_s_per_step}}
    if "detect" in bench:
        out["here"]["detect"] = bench["detect"]["median"]
    for name, rate in rates.items():
        slower = here_rate / (rate / pi4["threads"])  # one target core vs one core here (SIMD-bound work)
        python_slower = slower if python_s_per_step is None else PYTHON[name]["s_per_step"] / python_s_per_step
        per_call = steps * here_ms["decode_invoke"] * slower
        memory = steps * language_weight_bytes / BANDWIDTH[name]["bytes_per_s"] * 1e3
        parts = {"vision": macs["vision"] / rate * 1e3, "decode": max(per_call, memory),
                 "preprocess": here_ms["preprocess"] * slower, "python_glue": here_ms["python_glue"] * python_slower,
                 "detector": macs.get("detector", 0.0) / rate * 1e3 if "detect" in bench else 0.0}
        out[name] = {"core_slower_than_here": slower, "python_slower_than_here": python_slower,
                     "int8_mac_per_s": rate, **parts, "decode_per_call": per_call, "decode_memory": memory,
                     "decode_bound": "memory" if memory > per_call else "per-call"}
    tpu = CITED["edgetpu"]
    pi4_parts = out["pi4"]
    tpu_rate = tpu["macs"] / (tpu["ms"] * 1e-3)
    parts = {"vision": macs["vision"] / tpu_rate * 1e3 + tpu["call_ms"],
             "detector": macs["detector"] / tpu_rate * 1e3 + tpu["call_ms"] if pi4_parts["detector"] else 0.0,
             **{k: pi4_parts[k] for k in ("decode", "preprocess", "python_glue", "decode_per_call", "decode_memory",
                                           "decode_bound")}}
    out["edgetpu"] = {"int8_mac_per_s": tpu["macs"] / (tpu["ms"] * 1e-3), **parts}
    for name in TARGETS:
        _total(out[name])
    return out


def _total(parts: dict) -> None:
    parts["without_detector_ms"] = sum(parts[k] for k in ("vision", "decode", "preprocess", "python_glue"))
    parts["caption_ms"] = parts["without_detector_ms"] + parts["detector"]
    parts["captions_per_s"] = 1e3 / parts["caption_ms"]


def project_from_peaks(projected: dict, vision_macs: float, peak_here: float) -> dict:
    """The second estimate: the vision graph at the target's peak times the efficiency measured here (the
    Edge TPU's from Coral's published figure); the other parts as in ``project``."""
    efficiency = projected["here"]["vision_mac_per_s"] / peak_here
    tpu = CITED["edgetpu"]
    tpu_efficiency = tpu["macs"] / (tpu["ms"] * 1e-3) / PEAK["edgetpu"]["mac_per_s"]
    out = {"here": {"peak_mac_per_s": peak_here, "efficiency": efficiency}}
    for name in TARGETS:
        eff = tpu_efficiency if name == "edgetpu" else efficiency
        vision = vision_macs / (PEAK[name]["mac_per_s"] * eff) * 1e3 + (tpu["call_ms"] if name == "edgetpu" else 0)
        out[name] = {**projected[name], "vision": vision, "efficiency": eff}
        _total(out[name])
    return out


def _table(columns: list[str], cells) -> None:
    """A Markdown table with one row per target; ``cells(name)`` gives a row's cells after the target."""
    print("| target | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in TARGETS:
        print(f"| {CITED[name]['what']} | " + " | ".join(cells(name)) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", help="bundle directory (default: the shipped one)")
    ap.add_argument("--bench", help="use this `velm-edge bench --json` output instead of measuring now")
    ap.add_argument("--images", type=int, default=200, help="frames for the measurement (default: %(default)s)")
    add_flag(ap, "--beam-size", type=int, help="decoding to measure (default: the bundle's recommendation)")
    ap.add_argument("--peak", type=float, metavar="G_MAC_PER_S",
                    help="this core's peak int8 rate in G MAC/s, instead of measuring it with benchmarks/peak_int8.c")
    ap.add_argument("--nbody", type=float, metavar="US_PER_STEP",
                    help="this machine's benchmarks/nbody.py time per step in microseconds, instead of measuring it")
    args = ap.parse_args(argv)
    bench = json.load(open(args.bench))["result"] if args.bench else measure(args.bundle, args.images,
                                                                               args.beam_size)
    graphs = ("vision", "language", "detector") if Path(bench["bundle"], "detector.tflite").is_file() else \
        ("vision", "language")
    costs = {name: tflite_model.cost(tflite_model.read(Path(bench["bundle"], f"{name}.tflite").read_bytes()))
             for name in graphs}  # counted from the graphs themselves, as velm-edge info does
    macs, weights = {name: c["macs"] for name, c in costs.items()}, costs["language"]["weight_bytes"]
    python_here = args.nbody * 1e-6 if args.nbody else measure_python()
    p = project(bench, macs, weights, python_here)
    q = project_from_peaks(p, macs["vision"], args.peak * 1e9 if args.peak else measure_peak())
    h = p["here"]
    print(f"measured here ({bench['frame']} frames, {bench['runtime']['backend']}): vision {h['vision']:.2f} ms "
          f"= {h['vision_mac_per_s'] / 1e9:.1f} G MAC/s, decoder invoke {h['decode_invoke']:.3f} ms "
          f"x {h['steps']:.1f}, "
          f"preprocess {h['preprocess']:.2f} ms, Python glue {h['python_glue']:.2f} ms; n-body "
          f"{python_here * 1e6:.2f} us a step ({'given' if args.nbody else 'measured, benchmarks/nbody.py'})")
    decoding = f"{bench['steps_per_caption']:.1f} decoder steps per caption"
    print(f"\nPROJECTED (not measured) per caption, int8 bundle, {decoding}, ms.  First estimate: the vision graph at "
          "published int8 CNN rates:\n")
    _table(["vision graph", "detector graph", "decoder: per-call", "decoder: memory", "decoder (bound)", "resize",
            "Python", "caption without the detector", "caption", "captions/s"],
           lambda name: [f"{p[name]['vision']:.2f}", f"{p[name]['detector']:.2f}", f"{p[name]['decode_per_call']:.2f}",
                         f"{p[name]['decode_memory']:.2f}", f"{p[name]['decode']:.2f} ({p[name]['decode_bound']})"]
           + [f"{p[name][k]:.2f}" for k in ("preprocess", "python_glue")]
           + [f"{p[name]['without_detector_ms']:.1f}", f"{p[name]['caption_ms']:.1f}",
              f"{p[name]['captions_per_s']:.1f}"])
    print(f"\ndecoder, memory bound: {bench['steps_per_caption']:.1f} invokes x {weights / 1e6:.2f} MB of weights / "
          + ", ".join(f"{name} {BANDWIDTH[name]['bytes_per_s'] / 1e9:.2f} GB/s" for name in TARGETS[:2])
          + "; per-call bound: invokes x the interpreter's time of one invoke here x how much slower a target core is")
    e = q["here"]
    print(f"\nSecond estimate: peak x efficiency.  Peak int8 rate of one core here "
          f"{e['peak_mac_per_s'] / 1e9:.1f} G MAC/s ({'given' if args.peak else 'measured, benchmarks/peak_int8.c'}); "
          f"the vision graph reaches {e['efficiency']:.0%} of it.  Vision graph on one thread:\n")
    _table(["peak G MAC/s", "efficiency", "vision graph", "caption", "captions/s"],
           lambda name: [f"{PEAK[name]['mac_per_s'] / 1e9:.0f}", f"{q[name]['efficiency']:.0%}",
                         f"{q[name]['vision']:.2f}", f"{q[name]['caption_ms']:.1f}",
                         f"{q[name]['captions_per_s']:.1f}"])
    print("\nsources:")
    for name in TARGETS:
        print(f"  {name}: {CITED[name]['source']}")
        print(f"  {name} peak: {PEAK[name]['source']}")
        print(f"  {name} memory: {BANDWIDTH[name]['source']}")
        print(f"  {name} Python: {PYTHON[name]['source']}")
    print(f"  one Pi 4 core is taken as {p['pi4']['core_slower_than_here']:.1f}x slower than one core here, a Pi 5 "
          f"core {p['pi5']['core_slower_than_here']:.1f}x (per-core CNN rates); for Python "
          f"{p['pi4']['python_slower_than_here']:.1f}x and {p['pi5']['python_slower_than_here']:.1f}x (n-body)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
