"""The kiosk page server: routes, streams, tokens, Host checks, and clients that never slow the pipeline."""

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.kinds import open_sink
from velm_edge.sinks.kiosk import KioskSink


@pytest.fixture
def kiosk():
    k = KioskSink(port=0).start()
    yield k
    k.stop()


def get(k, path, headers=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{k.port}{path}", headers=headers or {})
    return urllib.request.urlopen(req, timeout=timeout)


def event(i, text="a red circle"):
    return CaptionEvent(text=text, tokens=(), score=0.0, complete=True, frame=i, captured=0.0, frame_age_ms=12.5,
                        latency_ms=1.0)


def test_page_health_and_latest(kiosk):
    page = get(kiosk, "/").read().decode()
    assert "EventSource" in page and "stream.mjpg" in page
    assert json.loads(get(kiosk, "/latest.json").read()) is None
    kiosk.write(event(7))
    assert json.loads(get(kiosk, "/latest.json").read())["frame"] == 7
    health = json.loads(get(kiosk, "/health").read())
    assert health["ok"] is True and health["captions"] == 1


def test_events_and_mjpeg_streams(kiosk):
    kiosk.write(event(1, "first"))
    stream = get(kiosk, "/events")
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert json.loads(stream.readline().decode().removeprefix("data: "))["text"] == "first"
    stream.readline()
    threading.Timer(0.2, kiosk.write, args=(event(2, "second"),)).start()
    assert json.loads(stream.readline().decode().removeprefix("data: "))["text"] == "second"
    stream.close()

    feeder = threading.Thread(target=lambda: [kiosk.frame(np.full((48, 64, 3), i, np.uint8)) or time.sleep(0.02)
                                              for i in range(50)])
    feeder.start()
    mjpeg = get(kiosk, "/stream.mjpg")
    assert mjpeg.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    head = mjpeg.read(200)
    assert head.startswith(b"--frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in head  # a JPEG starts
    mjpeg.close()
    feeder.join()


def test_only_get_and_head_and_the_right_host(kiosk):
    conn = http.client.HTTPConnection("127.0.0.1", kiosk.port, timeout=5)
    conn.request("POST", "/health", body=b"x")
    assert conn.getresponse().status == 501
    conn.close()
    with pytest.raises(urllib.error.HTTPError) as e:
        get(kiosk, "/health", {"Host": "evil.example:8080"})
    assert e.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as e:
        get(kiosk, "/nothing")
    assert e.value.code == 404


def test_non_loopback_needs_a_token_and_every_request_carries_it():
    with pytest.raises(ValueError, match="needs a token"):
        open_sink("kiosk:0.0.0.0:8080")
    k = KioskSink("127.0.0.1", 0, token="s3cret").start()
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            get(k, "/health")
        assert e.value.code == 401
        assert get(k, "/health?token=s3cret").status == 200
        assert get(k, "/health", {"Authorization": "Bearer s3cret"}).status == 200
        assert "events?token=s3cret" in get(k, "/?token=s3cret").read().decode()
    finally:
        k.stop()


def test_a_client_that_never_reads_does_not_slow_the_pipeline(kiosk):
    stalled = socket.create_connection(("127.0.0.1", kiosk.port))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads a byte
    big = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # JPEGs that fill buffers
    t = time.perf_counter()
    for i in range(300):
        kiosk.frame(big)
        kiosk.write(event(i))
    elapsed = time.perf_counter() - t
    stalled.close()
    assert elapsed < 0.3  # 300 frames and captions handed over without waiting on the client


@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="chromium is not installed")
def test_the_page_in_headless_chromium_shows_the_preview_and_follows_the_scene(tmp_path, free_port, wait_for_http):
    import re
    import subprocess
    import sys

    port = free_port
    run = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "run", "synth:?fps=15&hold_s=1&seed=5",
                            "--sink", f"kiosk:127.0.0.1:{port}", "--duration", "60"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    chrome = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--timeout=3000"]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/latest.json", accept=json.loads)  # until captions flow
        captions = []  # what the page shows, read by the browser itself, until the scene has changed
        deadline = time.monotonic() + 60
        while len(set(captions)) < 2 and time.monotonic() < deadline:
            dom = subprocess.run([*chrome, "--dump-dom", f"http://127.0.0.1:{port}/"], capture_output=True,
                                 text=True, timeout=60).stdout
            shown = re.search(r'<div id="caption">([^<]*)</div>', dom)
            if shown and shown.group(1) != "waiting for the first caption...":
                captions.append(shown.group(1))
        shot = tmp_path / "kiosk.png"
        subprocess.run([*chrome, "--window-size=800,600", f"--screenshot={shot}", f"http://127.0.0.1:{port}/"],
                       capture_output=True, timeout=60)
    finally:
        run.terminate()
        run.wait(10)
    assert len(set(captions)) >= 2  # the page followed the scene, which changes every second
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (600, 800)
    assert image[100:500, 150:650].std() > 10  # the preview is on the page, not a blank screen


def _status(port, method, path, headers) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_no_request_without_the_token_or_with_a_foreign_host_is_accepted():
    """Every route, method and way of (not) giving the token, counted."""
    token = "Zq7-secret-token"
    paths = ["/", "/index.html", "/health", "/latest.json", "/events", "/stream.mjpg", "/nothing", "//health",
             "/%2e%2e/etc/passwd", "/health/"]
    wrong = [{}, {"q": ""}, {"q": "wrong"}, {"q": token[:-1]}, {"q": token + "x"}, {"q": token.upper()},
             {"q": f"wrong&token={token}"}, {"h": f"Basic {token}"}, {"h": f"Bearer{token}"}, {"h": token},
             {"cookie": f"token={token}"}, {"h": "Bearer "}]
    k = KioskSink("0.0.0.0", 0, token=token).start()
    try:
        tried = accepted = 0
        for path in paths:
            for variant in wrong:
                for method in ("GET", "HEAD"):
                    url = path + (f"?token={variant['q']}" if "q" in variant else "")
                    headers = {"Host": f"127.0.0.1:{k.port}"}
                    if "h" in variant:
                        headers["Authorization"] = variant["h"]
                    if "cookie" in variant:
                        headers["Cookie"] = variant["cookie"]
                    tried += 1
                    accepted += _status(k.port, method, url, headers) < 400
        assert tried == 240 and accepted == 0
        for ok in ({"q": token}, {"h": f"Bearer {token}"}, {"h": f"bearer {token}"}):  # the scheme is case-blind
            url = "/health" + (f"?token={ok['q']}" if "q" in ok else "")
            headers = {"Host": f"127.0.0.1:{k.port}", **({"Authorization": ok["h"]} if "h" in ok else {})}
            assert _status(k.port, "GET", url, headers) == 200
    finally:
        k.stop()
    k = KioskSink("127.0.0.1", 0).start()  # loopback: no token, but the Host header must be ours
    try:
        hosts = ["evil.example", f"evil.example:{k.port}", "127.0.0.1.evil.example", "localhost.evil", "[::2]",
                 "127.0.0.2", "0.0.0.0", "", "127.0.0.1 evil", "LOCALHOST.evil"]
        accepted = sum(_status(k.port, method, path, {"Host": host}) < 400
                       for host in hosts for path in paths[:6] for method in ("GET", "HEAD"))
        accepted += _status(k.port, "GET", "/health", {}) < 400  # no Host header at all
        assert accepted == 0
        assert _status(k.port, "GET", "/health", {"Host": f"localhost:{k.port}"}) == 200
    finally:
        k.stop()


def test_silent_connections_hold_no_slot_and_are_dropped_at_the_deadline():
    k = KioskSink(port=0, max_clients=2, request_timeout_s=1.0).start()  # 8 handler threads at most
    socks = [socket.create_connection(("127.0.0.1", k.port)) for _ in range(40)]  # never send a request
    try:
        assert get(k, "/health").status == 200  # the silent ones wait in the header reader, not in a thread
        deadline, closed = time.monotonic() + 5, 0
        for s in socks:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                closed += s.recv(1) == b""  # closed by the server once its 1 s for a request is over
            except (TimeoutError, ConnectionError):
                pass
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()
        k.stop()


def _raw(port: int, data: bytes, until: bytes | None = None) -> bytes:
    """The answer to ``data`` until the server closes (or ``until`` arrives, or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        try:
            while (until is None or until not in got) and (chunk := s.recv(65536)):
                got += chunk
        except TimeoutError:
            pass
    return got


def test_head_on_the_preview_stream_sends_headers_only_and_origins_are_checked():
    k = open_sink("kiosk:127.0.0.1:0?allow_origin=http://localhost:3000").start()
    try:
        k.frame(np.zeros((48, 64, 3), np.uint8))
        get_answer = _raw(k.port, b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", until=b"--frame")
        assert b"--frame" in get_answer  # a GET gets the frame at once
        head = _raw(k.port, b"HEAD /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n") and b"--frame" not in head
        foreign = _raw(k.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n")
        assert foreign.startswith(b"HTTP/1.1 403")
        allowed = _raw(k.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://localhost:3000\r\n"
                               b"Connection: close\r\n\r\n")
        assert allowed.startswith(b"HTTP/1.1 200") and b"Access-Control-Allow-Origin: http://localhost:3000" in allowed
    finally:
        k.stop()


@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="chromium is not installed")
def test_the_page_boxes_what_the_detector_sees(tmp_path, free_port, wait_for_http):
    import re
    import shutil
    import subprocess
    import sys
    import urllib.request

    from velm_edge import samples

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(next(p for p in samples.paths() if p.stem == "astronaut"), folder / "astronaut.jpg")
    port = free_port
    run = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "run", str(folder), "--loop",
                            "--sink", f"kiosk:127.0.0.1:{port}", "--duration", "60"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    chrome = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--timeout=4000"]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/latest.json", accept=lambda body: json.loads(body) is not None)
        latest = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/latest.json", timeout=5).read())
        assert latest["detections"][0]["label"] == "person"
        labels, deadline = [], time.monotonic() + 60
        while not labels and time.monotonic() < deadline:
            dom = subprocess.run([*chrome, "--dump-dom", f"http://127.0.0.1:{port}/"], capture_output=True,
                                 text=True, timeout=60).stdout
            if re.search(r'<rect [^>]*class="box"', dom):
                labels = re.findall(r"<text [^>]*>([^<]*)</text>", dom)
    finally:
        run.terminate()
        run.wait(10)
    assert labels and labels[0].startswith("person 0.")  # drawn by the page itself, in the browser
