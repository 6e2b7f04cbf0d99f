"""Throughput of ``velm-edge serve`` against ``Captioner.caption`` called directly on the same images, through
each of its protocols: the native ``POST /v1/caption`` (the image as the body), Ollama's ``/api/generate``
and OpenAI's ``/v1/chat/completions`` (the image as base64 inside JSON, ``stream`` false).

    python benchmarks/service.py [--bundle photo] [--requests 200] [--clients 1,2,8]
                                 [--protocols native,ollama,openai] [--rounds 1] [--json out.json]

The service runs as its own process (``velm-edge serve --port 0``), as it would on a device; the load
generator keeps one keep-alive connection per client and posts JPEG frames (640x480 synthetic
scenes) as fast as the answers come: ApacheBench (``ab``, Debian's apache2-utils) when installed, else
Python threads (32 images).  The direct figures caption the same JPEG files in this process, decoded and then
captioned (the work the service must do): on one thread with the interpreter's own threading, and on
a pool of as many threads as the service has workers (one interpreter thread each, as the service).
Prints requests/s and p50/p95 latency per protocol and client count, the service's share of the best
direct rate, and the service process's CPU per caption for each protocol (requests one at a time).  The
JSON bodies are built once, before the clock starts, as a client that already holds the image would; the
service's base64 decoding and JSON parsing are inside the measurement.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from velm_edge.runtime.bundle import resolve
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.image_file import decode_image
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.synth import scenes
from velm_edge.tools.flags import add_flag


def frames(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        image, _ = scenes.generate(3_000_000 + i, scenes.SceneConfig(size=160))
        ok, buf = cv2.imencode(".jpg", cv2.resize(image, (640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(buf.tobytes())
    return out


def start_service(bundle: str, workers: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "serve", "--bundle", bundle, "--port", "0",
                             "--workers", str(workers), "--max-queue", "64"], stderr=subprocess.PIPE, text=True)
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("velm-edge serve did not start")
        if "listening on" in line:
            return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])


def bodies(protocol: str, images: list[bytes], model: str) -> tuple[str, str, list[bytes]]:
    """(path, content type, request bodies) that caption ``images`` through ``protocol``."""
    if protocol == "native":
        return "/v1/caption", "image/jpeg", images
    encoded = [base64.b64encode(i).decode() for i in images]
    if protocol == "ollama":
        requests = [{"model": model, "prompt": "Describe the image.", "images": [e], "stream": False} for e in encoded]
        return "/api/generate", "application/json", [json.dumps(r).encode() for r in requests]
    requests = [{"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe the image."},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{e}", "detail": "low"}}]}]}
        for e in encoded]
    return "/v1/chat/completions", "application/json", [json.dumps(r).encode() for r in requests]


def load(port: int, path: str, kind: str, images: list[bytes], clients: int, total: int) -> dict:
    """``total`` requests from ``clients`` threads, each on its own keep-alive connection."""
    latencies, errors, lock, next_i = [], [], threading.Lock(), [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= total:
                break
            body = images[i % len(images)]
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": kind})
            response = conn.getresponse()
            response.read()
            dt = time.perf_counter() - t0
            with lock:
                (latencies if response.status == 200 else errors).append(dt if response.status == 200
                                                                         else response.status)
        conn.close()

    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # every worker builds its interpreters first
    for body in images[:8]:
        warm.request("POST", path, body=body, headers={"Content-Type": kind})
        warm.getresponse().read()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1e3
    return {"clients": clients, "requests": total, "errors": len(errors), "per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def cpu_per_caption(pid: int, port: int, path: str, kind: str, body: bytes, total: int) -> float:
    """Milliseconds of the service process's CPU (user + system, from /proc) per caption, ``total`` requests
    sent one after another: what a protocol costs the device, apart from the timing noise of a shared VM."""
    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(5):
        conn.request("POST", path, body=body, headers={"Content-Type": kind})
        conn.getresponse().read()
    before = cpu_s()
    for _ in range(total):
        conn.request("POST", path, body=body, headers={"Content-Type": kind})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status}")
    conn.close()
    return round((cpu_s() - before) / total * 1e3, 2)


def load_ab(port: int, path: str, kind: str, images: list[bytes], clients: int, total: int) -> dict:
    """The same measurement with ApacheBench (Debian's apache2-utils), a load generator in C: one image, posted
    ``total`` times over ``clients`` keep-alive connections."""
    import re
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(images[0])
        f.flush()
        subprocess.run(["ab", "-q", "-k", "-n", "8", "-c", "2", "-p", f.name, "-T", kind,
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, check=True)  # warm-up
        out = subprocess.run(["ab", "-q", "-k", "-n", str(total), "-c", str(clients), "-p", f.name, "-T", kind,
                              f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout

    def number(pattern: str) -> float:
        return float(re.search(pattern, out, re.M).group(1))

    failed = int(number(r"^Failed requests:\s+(\d+)"))
    if failed:  # ab counts answers of another length as failed: captions (and timings) differ in length
        failed -= int(number(r"Length: (\d+)"))
    return {"clients": clients, "requests": total, "errors": failed +
            int(number(r"^Non-2xx responses:\s+(\d+)") if "Non-2xx" in out else 0),
            "per_s": number(r"^Requests per second:\s+([\d.]+)"), "p50_ms": number(r"^\s+50%\s+(\d+)"),
            "p95_ms": number(r"^\s+95%\s+(\d+)")}


def direct(bundle: str, images: list[bytes], total: int, workers: int) -> dict:
    """Captions/s of the same JPEG files captioned in this process: decoded (as the service must) and captioned."""
    def caption(cap: Captioner, i: int):
        return cap.caption(decode_image(images[i % len(images)]))  # the service's own reader

    out = {}
    with Captioner.open(bundle) as cap:  # one thread, the interpreter package's own threading
        for i in range(4):
            caption(cap, i)
        t0 = time.perf_counter()
        for i in range(total):
            caption(cap, i)
        out["one_thread_per_s"] = round(total / (time.perf_counter() - t0), 2)
    with Captioner.open(bundle, RuntimeOptions(threads=1)) as cap, ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: caption(cap, i), range(2 * workers)))  # each pool thread builds its interpreters
        t0 = time.perf_counter()
        list(pool.map(lambda i: caption(cap, i), range(total)))
        out[f"{workers}_threads_per_s"] = round(total / (time.perf_counter() - t0), 2)
    out["best_per_s"] = max(out.values())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(ap, "--bundle", default="photo", help="shipped name or path (default: photo)")
    add_flag(ap, "--requests", type=int, default=200, help="requests (and direct captions) per measurement")
    add_flag(ap, "--clients", default="1,2,8", help="client counts to measure")
    add_flag(ap, "--workers", type=int, default=os.cpu_count() or 2, help="the service's captioning threads")
    add_flag(ap, "--protocols", default="native,ollama,openai",
             help="protocols to measure: native (/v1/caption), ollama (/api/generate), openai (/v1/chat/completions)")
    add_flag(ap, "--loader", choices=("ab", "python"), default="ab" if shutil.which("ab") else "python",
             help="load generator: ab (apache2-utils, in C; one image) or python (http.client threads; 32 images)")
    add_flag(ap, "--rounds", type=int, default=1,
             help="repeat the direct and service measurements this many times, alternating, and report medians: "
                  "on a shared machine one round's figures move by 10 to 20 percent")
    add_flag(ap, "--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    bundle = str(resolve(args.bundle))
    images = frames(32)
    if args.loader == "ab":
        images = images[:1]  # ab posts one file: the direct figures caption that same image
    proc, port = start_service(bundle, args.workers)
    bases, rounds = [], []
    try:
        run = load_ab if args.loader == "ab" else load
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as r:
            model = json.load(r)["data"][0]["id"]
        for _ in range(args.rounds):  # direct, then the service: each round's share is against its own direct
            bases.append(direct(bundle, images, args.requests, args.workers))
            rows = []
            for protocol in args.protocols.split(","):
                path, kind, posted = bodies(protocol, images, model)
                rows += [{"protocol": protocol, **run(port, path, kind, posted, int(c), args.requests)}
                         for c in args.clients.split(",")]
            for r in rows:
                r["share_of_direct"] = round(r["per_s"] / bases[-1]["best_per_s"], 3)
            if os.path.exists(f"/proc/{proc.pid}/stat"):
                for protocol in args.protocols.split(","):
                    path, kind, posted = bodies(protocol, images, model)
                    cpu = cpu_per_caption(proc.pid, port, path, kind, posted[0], args.requests // 2)
                    for r in rows:
                        if r["protocol"] == protocol:
                            r["cpu_ms_per_caption"] = cpu
            rounds.append(rows)
    finally:
        proc.terminate()
        proc.wait(10)
    base = {k: float(np.median([b[k] for b in bases])) for k in bases[0]}
    rows = [{**first, **{k: float(np.median([rs[i][k] for rs in rounds]))
                         for k in ("per_s", "p50_ms", "p95_ms", "share_of_direct", "cpu_ms_per_caption")
                         if k in first},
             "errors": sum(rs[i]["errors"] for rs in rounds)} for i, first in enumerate(rounds[0])]
    print(f"{Path(bundle).name}, 640x480 JPEG frames, {args.workers} workers, {os.cpu_count()} cores, "
          f"load generator: {args.loader}, {args.rounds} round(s), medians")
    print(f"direct (decode_image + Captioner.caption): {base['one_thread_per_s']:.1f}/s on one thread, "
          f"{base[f'{args.workers}_threads_per_s']:.1f}/s on {args.workers} threads")
    print(f"{'protocol':>8s} {'clients':>7s} {'requests/s':>11s} {'p50 ms':>8s} {'p95 ms':>8s} {'of direct':>10s} "
          f"{'errors':>7s} {'service CPU ms/caption':>23s}")
    for r in rows:
        print(f"{r['protocol']:>8s} {r['clients']:7d} {r['per_s']:11.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
              f"{100 * r['share_of_direct']:9.1f}% {r['errors']:7d} {r.get('cpu_ms_per_caption', float('nan')):23.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"loader": args.loader, "direct": bases, "service": rows,
                                               "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
