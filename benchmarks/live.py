"""Benchmark: live captions from a 30 fps synthetic camera for a fixed time.

    python benchmarks/live.py [--seconds 30] [--fps 30] [--size 640] [--bundle B] [--gate 0] [--kiosk]
                              [--stalled-clients N] [--detect-every N]

Reports the preview rate (frames the reader delivered per second), captions per second, frame age
(capture to caption) median and p95 against the target (p95 <= one caption time + one frame
period), dropped frames, exact match against the synthetic truth, and the process's CPU use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from velm_edge.live import pipeline
from velm_edge.live.options import LiveOptions
from velm_edge.live.reader import LatestFrameReader
from velm_edge.live.sources import SynthSource
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.tools.flags import add_flag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to run (default: %(default)s)")
    ap.add_argument("--fps", type=float, default=30.0, help="synthetic camera frame rate (default: %(default)s)")
    ap.add_argument("--size", type=int, default=640, help="synthetic frame side in pixels (default: %(default)s)")
    ap.add_argument("--bundle", default="shapes", help="bundle path or shipped name (default: shapes, the synthetic "
                                                       "camera's model; photo times the real-world model)")
    ap.add_argument("--gate", type=float, default=0.0, help="scene-change gate threshold, 0 = off (default)")
    ap.add_argument("--kiosk", action="store_true", help="also serve the kiosk page on a free port")
    add_flag(ap, "--detect-every", type=int, default=1,
             help="the bundle's detector on every N-th captioned frame (bundles with a detector; default: %(default)s)")
    ap.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=False,
                    help="the next frame's vision graph on a second thread while the current caption decodes")
    ap.add_argument("--threads", type=int, default=None,
                    help="vision graph threads (default: as velm-edge run: the cores, shared with the decoder "
                         "under --overlap)")
    add_flag(ap, "--stalled-clients", type=int, default=0,
                    help="with --kiosk: clients that open the MJPEG stream and never read a byte")
    args = ap.parse_args(argv)

    source = SynthSource(fps=args.fps, size=args.size, seed=11, hold_s=3.0)
    reader = LatestFrameReader(source)
    sinks = []
    if args.kiosk:
        from velm_edge.sinks.kiosk import KioskSink

        sinks.append(KioskSink(port=0))
    ages, lat, correct, skipped = [], [], [], 0
    live = LiveOptions(duration_s=args.seconds, gate=args.gate, overlap=args.overlap, detect_every=args.detect_every)
    runtime = RuntimeOptions(threads=args.threads).sharing(2 if args.overlap else 1)
    with Captioner.open(args.bundle, runtime) as cap:
        c0, t0 = os.times(), time.monotonic()
        stalled = []
        if sinks:
            for s in sinks:
                s.start()
            reader.on_frame = lambda f: sinks[0].frame(f.image)
            import socket

            for _ in range(args.stalled_clients):
                conn = socket.create_connection(("127.0.0.1", sinks[0].port))
                conn.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                stalled.append(conn)
        for e in pipeline.captions(source, cap, live, reader=reader):
            skipped = e.skipped or 0
            ages.append(e.frame_age_ms)
            lat.append(e.latency_ms)
            correct.append(e.correct)
            for s in sinks:
                s.write(e)
        wall, c1 = time.monotonic() - t0, os.times()
        for conn in stalled:
            conn.close()
        for s in sinks:
            s.stop()
    a, caption_ms = np.asarray(ages), float(np.median(lat))
    target = caption_ms + 1e3 / args.fps
    result = {
        "seconds": round(wall, 1), "fps": args.fps, "frame": f"{args.size}x{args.size}",
        "preview_fps": round(reader.read_count / wall, 1), "captions_per_s": round(len(ages) / wall, 1),
        "frame_age_ms": {"median": round(float(np.median(a)), 2), "p95": round(float(np.percentile(a, 95)), 2)},
        "caption_ms_median": round(caption_ms, 3), "target_p95_ms": round(target, 2),
        "dropped": reader.dropped, "skipped_by_gate": skipped,
        "stalled_clients": args.stalled_clients,
        "exact_match": round(float(np.mean(correct)), 3),
        "cpu_cores": round((c1.user - c0.user + c1.system - c0.system) / wall, 2),
    }
    print(json.dumps(result, indent=2))
    ok = result["frame_age_ms"]["p95"] <= target
    print(f"frame age p95 {result['frame_age_ms']['p95']} ms {'<=' if ok else '>'} target {target:.1f} ms "
          f"(one caption {caption_ms:.2f} ms + one frame period {1e3 / args.fps:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
