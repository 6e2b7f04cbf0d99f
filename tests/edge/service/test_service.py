"""velm-edge serve: captions over local HTTP, safe by default."""

import json
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from velm_edge.errors import OptionError
from velm_edge.service.server import CaptionService, ServiceOptions
from velm_edge.synth import scenes
from velm_edge.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "a-long-secret"


def scene(seed: int = 2_000_000_777, size: int = 96):
    return scenes.generate(seed, scenes.SceneConfig(size=size))[0]


def encoded(image, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def post(url: str, body: bytes, query: str = "", token: str | None = None, timeout: float = 30):
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}/v1/caption{query}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.fixture
def service(captioner):
    with CaptionService(captioner, ServiceOptions(port=0, workers=2)) as s:
        yield s


def test_a_caption_for_each_image_type_equals_the_direct_one(service, captioner):
    image = scene()
    for ext, kind in ((".png", "png"), (".jpg", "jpeg"), (".bmp", "bmp")):
        data = encoded(image, ext)
        status, answer = post(service.url, data)
        assert status == 200, answer
        direct = captioner.caption(cv2.imdecode(np_bytes(data), cv2.IMREAD_COLOR))
        assert answer["text"] == direct.text and answer["tokens"] == list(direct.tokens)
        assert answer["image"] == {"type": kind, "width": 96, "height": 96} and answer["complete"] is True
        assert set(answer["timings_ms"]) >= {"preprocess", "vision", "decode", "total"}
        assert answer["confidence"] == round(direct.confidence, 3) and answer["tags"] == []  # shapes: no classes


def test_the_photo_bundle_answers_with_its_tags():
    from velm_edge import samples
    from velm_edge.runtime.captioner import Captioner

    with Captioner.open("photo") as cap, CaptionService(cap, ServiceOptions(port=0, workers=1)) as service:
        status, answer = post(service.url, (samples.FOLDER / "cat.jpg").read_bytes())
    assert status == 200 and answer["tags"][0]["word"] == "cat" and answer["tags"][0]["score"] > 0.5, answer
    assert set(answer["tags"][0]) == {"label", "word", "score"} and 0.5 <= answer["confidence"] <= 1


def test_the_photo_bundle_answers_with_detections_filtered_by_the_query():
    from velm_edge import samples
    from velm_edge.runtime.captioner import Captioner

    photo = (samples.FOLDER / "astronaut.jpg").read_bytes()
    with Captioner.open("photo") as cap, CaptionService(cap, ServiceOptions(port=0, workers=1)) as service:
        every = post(service.url, photo, "?min_score=0.05&max_detections=100")[1]["detections"]
        people = post(service.url, photo, "?classes=person&min_score=0.05")[1]["detections"]
        off, default = post(service.url, photo, "?detect=false")[1], post(service.url, photo, "")[1]
        refused = [post(service.url, photo, q) for q in ("?classes=unicorn", "?detect=maybe", "?min_score=2")]
        info = json.loads(urllib.request.urlopen(f"{service.url}/v1/info", timeout=5).read())
    assert info["detection"]["labels"][0] == "person" and len(info["detection"]["labels"]) == 80
    assert info["detection"]["detect"] is True and info["detection"]["min_score"] is None
    assert len(every) > len(people) >= 1 and {d["label"] for d in people} == {"person"}
    assert every[0]["label"] == "person" and set(every[0]) == {"label", "score", "box"}
    # the photo bundle's decoder takes the detections: the detector still runs, the answer leaves them out
    assert off["detections"] == [] and default["detections"] and off["text"] == default["text"]
    assert [status for status, _ in refused] == [400, 400, 400]
    assert "unicorn" in refused[0][1]["error"] and "detect must be boolean" in refused[1][1]["error"]


def np_bytes(data: bytes):
    import numpy as np

    return np.frombuffer(data, np.uint8)


def test_decoding_options_in_the_query_and_unknown_ones_refused(service, captioner):
    data = encoded(scene(), ".png")
    status, answer = post(service.url, data, "?beam_size=4&max_length=3")
    direct = captioner.caption(scene(), captioner.options.override(beam_size=4, max_length=3))
    assert status == 200 and answer["text"] == direct.text and len(answer["tokens"]) <= 3
    status, answer = post(service.url, data, "?beem_size=4")
    assert status == 400 and "unknown option beem_size; known: beam_size" in answer["error"]
    status, answer = post(service.url, data, "?beam_size=wide")
    assert status == 400 and "beam_size must be int" in answer["error"]


def test_the_openapi_description_lists_exactly_the_routes_that_answer(service):
    with urllib.request.urlopen(f"{service.url}/v1/openapi.json", timeout=10) as r:
        spec = json.load(r)
    assert spec["openapi"].startswith("3.")
    described = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    from velm_edge.service.server import ServiceHandler

    assert described == set(ServiceHandler.routes)
    for method, path in described:  # each described route exists: never "no such path"
        request = urllib.request.Request(service.url + path, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status, body = r.status, r.read(300)
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        assert status != 404 or b"no live source" in body, (method, path, status, body)
    with urllib.request.urlopen(f"{service.url}/v1/info", timeout=10) as r:
        info = json.load(r)
    assert info["bundle"]["precision"] == "int8" and info["workers"] == 2 and info["live_source"] is None
    assert info["detection"] is None  # the shapes bundle has no detector


def test_binding_beyond_loopback_needs_a_token():
    with pytest.raises(OptionError, match="needs a token"):
        ServiceOptions(host="0.0.0.0")
    assert ServiceOptions(host="0.0.0.0", token=TOKEN).token == TOKEN


# -- hostile requests ---------------------------------------------------------------------------------------

def raw(port: int, data: bytes, timeout: float = 10.0, then_wait: bool = True) -> int | None:
    """Send bytes on a fresh connection; the response's status (None: closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        chunks = b""
        try:
            while b"\r\n" not in chunks:
                got = s.recv(4096)
                if not got:
                    break
                chunks += got
        except OSError:
            return None
    line = chunks.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None


def request(body: bytes = b"", method: str = "POST", path: str = "/v1/caption", host: str | None = "127.0.0.1",
            token: str | None = TOKEN, extra: str = "", length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if method == "POST" and length is not False:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines.append("Connection: close")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int, image) -> bytes:
    data = bytearray(encoded(image, ".jpg"))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int, image) -> bytes:
    data = bytearray(encoded(image, ".bmp"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def test_a_thousand_hostile_requests_are_refused_and_the_service_still_captions(captioner):
    rng = random.Random(16)
    image = scene(size=64)
    valid = {ext: encoded(image, ext) for ext in (".png", ".jpg", ".bmp")}
    options = ServiceOptions(port=0, token=TOKEN, workers=2, max_body_bytes=300_000, max_pixels=1_000_000,
                             timeout_s=2.0, max_queue=2, max_connections=48)
    threads_before = threading.active_count()
    with CaptionService(captioner, options) as service:
        port = service.port
        cases: list[tuple[str, bytes, set]] = []  # (category, request bytes, acceptable statuses)
        for _ in range(300):  # truncated images of every type
            data = valid[rng.choice(list(valid))]
            cases.append(("truncated", request(data[:rng.randrange(1, len(data) - 1)]), {400, 415}))
        for _ in range(200):  # garbage
            cases.append(("garbage", request(rng.randbytes(rng.randrange(1, 5000))), {400, 415}))
        for w, h in [(100_000, 100_000), (65_535, 65_535), (20_000, 1_000), (1_001, 1_000)] * 15:  # bombs
            cases.append(("bomb", request(rng.choice([png_claiming(w, h), jpeg_claiming(min(w, 65535), min(h, 65535),
                                                                                         image),
                                                      bmp_claiming(w, h, image)])), {413}))
        for _ in range(30):  # oversized: announced, and real
            cases.append(("oversized", request(b"\xff\xd8\xff", length=10**9), {413}))
            cases.append(("oversized", request(b"\x89PNG\r\n\x1a\n" + bytes(options.max_body_bytes)), {413}))
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE") * 12:  # wrong methods
            cases.append(("method", request(valid[".png"], method=method), {501}))
        for _ in range(20):
            cases.append(("method", request(method="GET"), {405}))
            cases.append(("method", request(valid[".png"], path="/health"), {405}))
            cases.append(("method", request(valid[".png"], path="/v2/caption"), {404}))
        for host in [None, "evil.example", "evil.example:80", "127.0.0.2", "localhost.evil.example"] * 20:
            cases.append(("host", request(valid[".png"], host=host), {403}))
        for token in [None, "", "wrong", TOKEN + "x", TOKEN[:-1], "Bearer"] * 34:
            cases.append(("token", request(valid[".png"], token=token), {401}))
        for _ in range(20):  # broken framing
            cases.append(("framing", request(valid[".png"], length=False), {411}))
            cases.append(("framing", request(valid[".png"], extra="Transfer-Encoding: chunked"), {411}))
            cases.append(("framing", b"GARBAGE\r\n\r\n", {400}))
            cases.append(("framing", request(valid[".png"], extra="X-Long: " + "a" * 70_000), {400, 431}))
        for query in ["?beam_size=x", "?evil=1", "?max_length=-3", "?beam_size=0"] * 5:
            cases.append(("query", request(valid[".png"], path="/v1/caption" + query), {400}))
        assert len(cases) >= 1000

        # slowloris and half-open clients hold connections meanwhile; they must not block the others
        connected = []

        def slowloris() -> int | None:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
                connected.append(s)
                t0 = time.monotonic()
                try:
                    for byte in request(valid[".png"]):
                        s.sendall(bytes([byte]))
                        time.sleep(0.3)
                        if time.monotonic() - t0 > 12:
                            break
                except OSError:
                    pass
                return round(time.monotonic() - t0, 1)

        def half_open() -> int | None:
            data = request(valid[".png"])
            return raw(port, data[: len(data) - 100])  # the body never completes: 408 after timeout_s

        with ThreadPoolExecutor(40) as slow:
            lorises = [slow.submit(slowloris) for _ in range(10)]
            halves = [slow.submit(half_open) for _ in range(10)]
            wait_until(lambda: len(connected) == len(lorises), 5, "the slowloris clients to connect")
            t0 = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda c: (c[0], raw(port, c[1]), c[2]), cases))
            hostile_s = time.monotonic() - t0
            cut_after = [f.result() for f in lorises]
            half_statuses = [f.result() for f in halves]
        wrong = [(cat, got, ok) for cat, got, ok in results if got not in ok]
        assert not wrong, f"{len(wrong)} of {len(results)} answered wrongly, e.g. {wrong[:5]}"
        assert all(t < 7 for t in cut_after), cut_after  # cut at the 2 s header deadline, not after 12 s of drip
        assert all(s in (408, None) for s in half_statuses), half_statuses
        assert hostile_s < 60

        # many clients at once, valid: each is captioned or told to retry, never anything else
        with ThreadPoolExecutor(32) as pool:
            crowd = list(pool.map(lambda _: raw(port, request(valid[".png"]), timeout=30), range(100)))
        # (how many are captioned depends on how fast the rest are told to retry: at least what fits at once)
        assert set(crowd) <= {200, 503} and crowd.count(200) >= options.workers + options.max_queue, crowd
        assert len(results) + len(lorises) + len(halves) + len(crowd) >= 1100

        status, answer = post(service.url, valid[".png"], token=TOKEN)
        assert status == 200 and answer["text"] == captioner.caption(cv2.imdecode(np_bytes(valid[".png"]),
                                                                                cv2.IMREAD_COLOR)).text
    wait_until(lambda: threading.active_count() <= threads_before + 2, 5, "every thread to end")  # none left behind


# -- the command, its live source and clients in three languages -------------------------------------------

@pytest.fixture
def served(tmp_path):
    """A real `velm-edge serve` with the shapes bundle and a live synthetic camera, on a free port."""
    proc = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "serve", "synth:?fps=15&size=80",
                             "--bundle", "shapes", "--port", "0"], stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            url = line.split("listening on ")[1].split()[0]
    assert url, "serve did not start"
    yield url
    proc.terminate()
    proc.wait(10)


def test_the_live_source_is_served_as_latest_and_as_events(served):
    deadline, latest = time.monotonic() + 30, None
    while latest is None and time.monotonic() < deadline:
        with urllib.request.urlopen(f"{served}/v1/latest", timeout=10) as r:
            latest = json.load(r)
        time.sleep(0.2)
    assert latest and latest["text"] and "truth" in latest
    with urllib.request.urlopen(f"{served}/v1/events", timeout=10) as r:
        first = r.readline().decode()
    assert first.startswith("data: ") and json.loads(first[6:])["text"]


def test_curl_node_and_python_clients_caption_an_image(served, tmp_path):
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), scene())
    status, beam3 = post(served, image.read_bytes(), "?beam_size=3")
    _, plain = post(served, image.read_bytes())
    assert status == 200
    env = {"VELM_URL": served, "PATH": "/usr/bin:/bin:/usr/local/bin"}
    py = subprocess.run([sys.executable, str(ROOT / "examples" / "caption_http.py"), str(image)], env=env,
                        capture_output=True, text=True, timeout=60)
    assert py.returncode == 0 and py.stdout.strip() == beam3["text"], py.stderr
    missing = []
    if shutil.which("curl"):
        sh = subprocess.run(["sh", str(ROOT / "examples" / "caption_http.sh"), str(image)], env=env,
                            capture_output=True, text=True, timeout=60)
        assert sh.returncode == 0 and json.loads(sh.stdout)["text"] == plain["text"], sh.stderr
    else:
        missing.append("curl")
    node = shutil.which("node") or shutil.which("nodejs")
    if node:
        js = subprocess.run([node, str(ROOT / "examples" / "caption_http.mjs"), str(image)], env=env,
                            capture_output=True, text=True, timeout=60)
        assert js.returncode == 0 and js.stdout.strip() == beam3["text"], js.stderr
        bad = subprocess.run([node, str(ROOT / "examples" / "caption_http.mjs"), str(ROOT / "README.md")], env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "error 415: not a JPEG, PNG or BMP" in bad.stderr
    else:
        missing.append("node (apt install nodejs)")
    if missing:
        pytest.skip(f"the Python client passed; not installed here: {', '.join(missing)}")
