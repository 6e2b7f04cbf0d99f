"""Soak: live captions for a long time with injected camera faults and misbehaving web clients.

    python benchmarks/soak.py [--seconds 600] [--period 20] [--json soak.json]

A captioning process (this script with --child) runs the shipped bundle on the synthetic camera wrapped
in velm_edge.testing.faults.FaultySource, which fails, stalls, sends garbage or freezes every PERIOD seconds in
turn, with the kiosk page and a JSONL log as sinks.  Meanwhile this process plays web clients that
watch the MJPEG and caption streams, stall without reading, poll the page, or connect and say nothing,
and samples the captioning process's memory, threads and file descriptors every second.

It reports: captions emitted; reconnects and, for every fault, how long after the source came back
the first caption of a fresh frame arrived; peak RSS and its growth after warm-up; threads and
descriptors before the clients start and after they have left; JSONL lines that parse, against the
captions the process says it wrote.  It exits with 1 if any of these fails: every fault recovered
within 2 s, 0 lines lost or torn, RSS growth < 10 MB, threads and descriptors back where they were.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from velm_edge.tools.flags import add_flag

WARMUP_S = 8.0  # clients start, and the memory baseline is taken, after this
DRAIN_S = 15.0  # clients stop this long before the end, so their connections are gone at the end


# -- the captioning process ---------------------------------------------------------------------------------

def child(args) -> int:
    from velm_edge.live import pipeline
    from velm_edge.live.options import LiveOptions
    from velm_edge.live.reader import LatestFrameReader
    from velm_edge.live.sources import SynthSource
    from velm_edge.runtime.captioner import Captioner
    from velm_edge.sinks.kinds import open_sink
    from velm_edge.testing.faults import FaultySource, cycle

    lengths = {"freeze": args.frozen_s + 2.0}
    faults = cycle(args.seconds, args.period, lengths=lengths, first_s=WARMUP_S + 2)  # none during the baseline
    source = FaultySource(SynthSource(fps=30, size=320, seed=11), faults)
    reader = LatestFrameReader(source, frozen_s=args.frozen_s)
    sinks = [open_sink(f"kiosk:127.0.0.1:{args.port}"), open_sink(f"jsonl:{args.jsonl}")]
    with Captioner.open("shapes") as cap:  # the synthetic camera's own model
        source.open()  # the fault clock starts here
        Path(args.schedule).write_text(json.dumps({
            "t0_wall": time.time() - (time.monotonic() - source.t0),
            "faults": [{"start_s": f.start_s, "kind": f.kind, "seconds": f.seconds} for f in faults]}))
        counts = pipeline.run(source, cap, sinks, LiveOptions(duration_s=args.seconds), reader=reader)
    counts.update(reconnects=reader.reconnects, frozen=reader.frozen, bad_frames=reader.bad_frames,
                  dropped=reader.dropped, opens=source.opens)
    print(json.dumps(counts), flush=True)
    return 0


# -- web clients ---------------------------------------------------------------------------------------------

def _client(port: int, stop: threading.Event, kind: str, stats: dict, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            if kind in ("watch", "stall"):
                path = rng.choice(["/stream.mjpg", "/events"])
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                end = time.monotonic() + rng.uniform(1, 6)
                while time.monotonic() < end and not stop.is_set():
                    if kind == "watch":
                        stats["bytes"] += len(s.recv(65536))
                    else:
                        time.sleep(0.2)  # connected, never reading
                s.close()
            elif kind == "page":
                for path in ("/", "/latest.json", "/health"):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
                stop.wait(0.5)
            else:  # "silent": connect and say nothing
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                stop.wait(rng.uniform(1, 8))
                s.close()
            stats["sessions"] += 1
        except OSError:
            stats["errors"] += 1
            stop.wait(0.2)


def _sample(pid: int) -> dict | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # exiting
        return None
    return {"t": time.monotonic(), "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "threads": int(fields["Threads"]), "fds": fds}


def _recoveries(schedule: dict, events: list[dict]) -> list[dict]:
    out = []
    for f in schedule["faults"]:
        back = schedule["t0_wall"] + f["start_s"] + f["seconds"]  # when the source returned
        after = [e["captured"] + e["frame_age_ms"] / 1e3 for e in events if e["captured"] >= back]
        out.append({**f, "recovered_after_s": round(min(after) - back, 3) if after else None})
    return out


def drive(args) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl, schedule_path = Path(tmp, "captions.jsonl"), Path(tmp, "faults.json")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, __file__, "--child", "--seconds", str(args.seconds), "--period", str(args.period),
               "--frozen-s", str(args.frozen_s), "--port", str(port), "--jsonl", str(jsonl),
               "--schedule", str(schedule_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        start = time.monotonic()
        samples, stop = [], threading.Event()
        stats = {"sessions": 0, "errors": 0, "bytes": 0}
        kinds = ["watch", "stall", "page", "silent"] * max(1, args.clients // 4)
        clients = [threading.Thread(target=_client, args=(port, stop, k, stats, i), daemon=True)
                   for i, k in enumerate(kinds)]
        started = stopped = False
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            if not started and elapsed > WARMUP_S:
                before = _sample(proc.pid)
                for c in clients:
                    c.start()
                started = True
            if started and not stopped and elapsed > args.seconds - DRAIN_S:
                stop.set()
                stopped = True
            sample = _sample(proc.pid)
            if sample:
                samples.append({**sample, "t": sample["t"] - start})
            time.sleep(1.0)
        counts = json.loads(proc.stdout.read().strip().splitlines()[-1])
        lines = jsonl.read_text().splitlines()
        schedule = json.loads(schedule_path.read_text())
    events, torn = [], 0
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            torn += 1
    after = [s for s in samples if s["t"] > WARMUP_S]
    baseline = statistics.median(s["rss_mb"] for s in after[:5])
    final = statistics.median(s["rss_mb"] for s in after[-5:])
    middle = statistics.median(s["rss_mb"] for s in after[len(after) // 2 - 2:len(after) // 2 + 3])
    end = samples[-2]  # the last full sample before the process began to exit
    recoveries = _recoveries(schedule, events)
    worst = max((r["recovered_after_s"] for r in recoveries if r["recovered_after_s"] is not None), default=0.0)
    report = {
        "seconds": args.seconds, "captions": counts["captions"], "jsonl_lines": len(lines), "torn_lines": torn,
        "lost_lines": counts["captions"] - len(events), "reconnects": counts["reconnects"],
        "frozen_detected": counts["frozen"], "bad_frames": counts["bad_frames"], "faults": recoveries,
        "worst_recovery_s": worst, "rss_mb": {"peak": round(max(s["rss_mb"] for s in samples), 1),
                                              "after_warmup": round(baseline, 1), "end": round(final, 1),
                                              "growth": round(final - baseline, 1),
                                              "growth_second_half": round(final - middle, 1),
                                              "every_30_s": [round(x["rss_mb"], 1) for x in samples[::30]]},
        "threads": {"before_clients": before["threads"], "peak": max(s["threads"] for s in samples),
                    "end": end["threads"]},
        "fds": {"before_clients": before["fds"], "peak": max(s["fds"] for s in samples), "end": end["fds"]},
        "clients": stats,
    }
    checks = {
        "every fault recovered within 2 s": all(r["recovered_after_s"] is not None and r["recovered_after_s"] <= 2.0
                                                for r in recoveries),
        "0 JSONL lines lost or torn": torn == 0 and report["lost_lines"] == 0,
        "RSS growth < 10 MB after warm-up": report["rss_mb"]["growth"] < 10,
        "threads back where they were": end["threads"] <= before["threads"],
        "descriptors back where they were": end["fds"] <= before["fds"],
    }
    report["checks"] = checks
    print(json.dumps(report, indent=2))
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="how long to run (default: %(default)s)")
    ap.add_argument("--period", type=float, default=20.0, help="seconds between faults (default: %(default)s)")
    add_flag(ap, "--frozen-s", type=float, default=10.0,
                    help="the reader's frozen-frame limit; freeze faults last 2 s longer (default: %(default)s)")
    ap.add_argument("--clients", type=int, default=8, help="web clients, a quarter of each kind (default: %(default)s)")
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--jsonl", help=argparse.SUPPRESS)
    ap.add_argument("--schedule", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seconds < 2 * DRAIN_S + WARMUP_S:
        ap.error(f"--seconds must be at least {2 * DRAIN_S + WARMUP_S:g}")
    return child(args) if args.child else drive(args)


if __name__ == "__main__":
    sys.exit(main())
