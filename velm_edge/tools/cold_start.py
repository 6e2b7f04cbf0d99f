"""The child process of ``velm-edge bench``'s cold-start figure: import, open a bundle, caption once.

    python -m velm_edge.tools.cold_start BUNDLE [BACKEND [DEVICE]]

Prints one JSON line: seconds spent importing the runtime, opening the bundle and captioning the
first frame, and the process's peak resident memory in MB.  Imports nothing heavy before timing.
"""

import json
import sys
import time


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include the parent's, kept across exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):  # not Linux
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def main(bundle: str, backend: str = "auto", device: str = "cpu") -> None:
    t0 = time.perf_counter()
    import numpy as np

    from velm_edge.runtime.captioner import Captioner
    from velm_edge.runtime.options import RuntimeOptions

    t1 = time.perf_counter()
    with Captioner.open(bundle, RuntimeOptions(backend=backend, device=device)) as cap:
        t2 = time.perf_counter()
        cap.caption(np.full((480, 640, 3), 127, np.uint8))
        t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "open": t2 - t1, "first_caption": t3 - t2, "peak_rss_mb": peak_rss_mb(),
                      "tensorflow_imported": "tensorflow" in sys.modules}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
