"""The caption service under hostile load, measured: what the hostile-load review found, as figures.

    python benchmarks/hostile_load.py [--bundle shapes] [--json out.json]

Starts ``velm-edge serve`` (2 workers, a token, the default 5 s for a request head) as its own process
and, one after the other:

- asks ``/health`` every 50 ms for 3 s while 64 connections drip a header byte every 0.5 s, then while
  100 connections stay silent and reconnect whenever they are cut: requests served during each attack,
  and right after it;
- posts four 39.7 Mpx 16-bit RGBA PNGs (309 KB each, 318 MB decoded) at once: their statuses and the
  service's peak RSS over its RSS before (``VmHWM`` in /proc);
- posts 64 bodies of 9.2 MB at once: RSS before and 2 s after;
- sends SIGTERM while 30 captions are in flight: how many clients got an HTTP answer.

To compare with another checkout, run this file from that checkout (``cd OLD && python
/path/to/hostile_load.py``): the service is started from whatever ``velm_edge`` Python imports there.
``tests/edge/service/test_service_under_attack.py`` asserts the same attacks with these helpers.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

TOKEN = "a-long-secret"


def exchange(port: int, data: bytes, timeout: float = 10.0, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        return read_to_close(s)


def read_to_close(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or a read fails or times out)."""
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


def statuses(answer: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^HTTP/1\.[01] (\d{3})", answer, re.M)]


def head(method: str = "GET", path: str = "/health", host: str | None = "127.0.0.1", token: str | None = None,
         extra: tuple[str, ...] = (), body: bytes = b"", length: bool = True, close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"] + ([f"Host: {host}"] if host is not None else [])
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    lines += (["Connection: close"] if close else []) + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def body_json(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])



def health_during(port: int, seconds: float, token: str | None = None) -> tuple[int, int]:
    """(served, asked): /health asked every 50 ms for ``seconds`` on fresh connections."""
    served = asked = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        asked += 1
        served += statuses(exchange(port, head(token=token), timeout=3.0))[:1] == [200]
        time.sleep(0.05)
    return served, asked


class Attack(threading.Event):
    """An attack under way: ``set()`` (or its timer) stops it; ``connected`` counts the connections it made."""

    def __init__(self):
        super().__init__()
        self.connected = 0
        self._count = threading.Lock()

    def made_one(self) -> None:
        with self._count:
            self.connected += 1


def attack(port: int, connections: int, behave, seconds: float) -> Attack:
    """``connections`` threads run ``behave(socket)`` on fresh connections, reconnecting, until stopped."""
    stop = Attack()

    def loop() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    stop.made_one()
                    behave(s, stop)
            except OSError:
                time.sleep(0.01)

    for _ in range(connections):
        threading.Thread(target=loop, daemon=True).start()
    threading.Timer(seconds, stop.set).start()
    return stop


def drip(s: socket.socket, stop: threading.Event) -> None:
    s.sendall(b"GET /health HTTP/1.1\r\n")
    while not stop.wait(0.5):
        s.sendall(b"X")  # a header byte at a time, for as long as the server lets it


def idle(s: socket.socket, stop: threading.Event) -> None:
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            if s.recv(1) == b"":
                return  # cut: reconnect
        except TimeoutError:
            pass



def png_16bit_rgba(side: int) -> bytes:
    """A PNG of side x side 16-bit RGBA zeros: a few hundred KB that decode to side**2 x 8 bytes."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    z, row, parts = zlib.compressobj(9), b"\0" * (1 + side * 8), []
    for _ in range(side):
        parts.append(z.compress(row))
    parts.append(z.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)) + \
        chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def rss_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def serve(bundle: str) -> tuple[subprocess.Popen, int]:
    """``velm-edge serve`` with 2 workers and the token, in its own process: (process, port)."""
    proc = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "serve", "--bundle", bundle, "--port", "0",
                             "--workers", "2", "--token", TOKEN], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
    proc.kill()
    raise SystemExit("velm-edge serve did not start")


def caption_request(body: bytes) -> bytes:
    return head("POST", "/v1/caption", token=TOKEN, body=body)


def a_scene_png() -> bytes:
    import cv2

    from velm_edge.synth import scenes

    return cv2.imencode(".png", scenes.generate(2_000_000_777, scenes.SceneConfig(size=80))[0])[1].tobytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="shapes", help="the bundle the service runs (default: shapes)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    figures: dict = {}
    proc, port = serve(args.bundle)
    try:
        for name, behave, connections in (("drip", drip, 64), ("idle", idle, 100)):
            stop = attack(port, connections, behave, 4.0)
            deadline = time.monotonic() + 5
            while stop.connected < connections and time.monotonic() < deadline:  # every attacker is connected
                time.sleep(0.02)
            served, asked = health_during(port, 3.0, TOKEN)
            stop.wait()
            after, asked_after = health_during(port, 0.5, TOKEN)
            figures[name] = {"connections": connections, "served": served, "asked": asked, "served_after": after,
                             "asked_after": asked_after}
            print(f"{connections} connections ({name}): {served} of {asked} /health served during, "
                  f"{after} of {asked_after} right after", flush=True)
            time.sleep(5.5)  # the attackers' last connections reach their deadline
        png = a_scene_png()
        exchange(port, caption_request(png))  # interpreters built: the baseline is warm
        bomb, before = png_16bit_rgba(6300), rss_kb(proc.pid, "VmRSS")
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: exchange(port, caption_request(bomb), timeout=60), range(4)))
        peak = (rss_kb(proc.pid, "VmHWM") - before) / 1024
        figures["png_bombs"] = {"statuses": [statuses(a)[:1] for a in answers], "peak_rss_mb_over_before": peak}
        print(f"4 PNG bombs of {len(bomb)} bytes: {[statuses(a)[:1] for a in answers]}, peak RSS +{peak:.0f} MB",
              flush=True)
        big, before = b"\x89PNG\r\n\x1a\n" + bytes(9_200_000), rss_kb(proc.pid, "VmRSS")
        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(lambda _: exchange(port, caption_request(big), timeout=60), range(64)))
        time.sleep(2)
        after_mb = rss_kb(proc.pid, "VmRSS") / 1024
        figures["uploads"] = {"rss_mb_before": before / 1024, "rss_mb_2s_after": after_mb}
        print(f"64 x 9.2 MB uploads: RSS {before / 1024:.0f} MB before, {after_mb:.0f} MB 2 s after", flush=True)
    finally:
        proc.kill()
        proc.wait()
    proc, port = serve(args.bundle)
    sent, answered = threading.Barrier(31), []

    def client() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(caption_request(png))
            sent.wait()
            answered.append(statuses(read_to_close(s))[:1])

    clients = [threading.Thread(target=client) for _ in range(30)]
    for c in clients:
        c.start()
    sent.wait()
    proc.send_signal(signal.SIGTERM)
    for c in clients:
        c.join()
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "none: still running 60 s after SIGTERM, killed"
    figures["sigterm"] = {"in_flight": 30, "answered": sum(1 for a in answered if a),
                          "captions": answered.count([200]), "busy": answered.count([503]), "exit": code}
    print(f"SIGTERM with 30 captions in flight: {figures['sigterm']['answered']} of 30 answered "
          f"({figures['sigterm']['captions']} captions, {figures['sigterm']['busy']} x 503), exit code {code}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
