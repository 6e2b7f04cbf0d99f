"""The vision graph against this core's int8 peak, with XNNPACK on and off, in this interpreter package.

    python benchmarks/vision_peak.py [--bundle photo] [--invokes 200] [--peak G_MAC_PER_S]
    .venv-tflite/bin/python benchmarks/vision_peak.py      # the same in tflite-runtime 2.14

One interpreter thread.  The peak is benchmarks/peak_int8.c's (see benchmarks/project.py), measured here
unless given; the vision graph's multiply-accumulates are counted from the .tflite.  "XNNPACK off" is the
package's builtin kernels (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``).  The language graph's
one-row invoke is timed the same way, for the record.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from project import measure_peak  # benchmarks/project.py, beside this file

from velm_edge.runtime import backend
from velm_edge.runtime.bundle import Bundle, resolve
from velm_edge.tools import tflite_model


def median_ms(interpreter, invokes: int) -> float:
    for _ in range(5):
        interpreter.invoke()
    times = []
    for _ in range(invokes):
        t = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="photo")
    ap.add_argument("--invokes", type=int, default=200)
    ap.add_argument("--peak", type=float, default=None, metavar="G_MAC_PER_S",
                    help="this core's peak int8 rate, instead of measuring it with benchmarks/peak_int8.c")
    args = ap.parse_args()
    bundle = Bundle.load(resolve(args.bundle))
    macs = tflite_model.cost(tflite_model.read(bundle.vision))["macs"]
    peak = args.peak * 1e9 if args.peak else measure_peak()
    module, name = backend.interpreter_module("auto")
    print(f"{name}, {args.bundle} vision graph {macs / 1e6:.0f} M MACs, one thread; peak of one core here "
          f"{peak / 1e9:.1f} G MAC/s ({'given' if args.peak else 'benchmarks/peak_int8.c'})")
    print(f"{'kernels':>12s} {'vision ms':>10s} {'G MAC/s':>8s} {'of peak':>8s} {'language ms':>12s}")
    for label, resolver in (("XNNPACK", None), ("builtin", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")):
        kw = {} if resolver is None else {"experimental_op_resolver_type": getattr(module.OpResolverType, resolver)}
        vision = module.Interpreter(model_content=bundle.vision, num_threads=1, **kw)
        vision.allocate_tensors()
        language = module.Interpreter(model_content=bundle.language, num_threads=1, **kw)
        language.allocate_tensors()
        ms, step_ms = median_ms(vision, args.invokes), median_ms(language, args.invokes * 5)
        rate = macs / (ms * 1e-3)
        print(f"{label:>12s} {ms:10.2f} {rate / 1e9:8.1f} {rate / peak:8.0%} {step_ms:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
