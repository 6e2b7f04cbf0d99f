"""The HTTP layer under hostile load: slow and idle connections, framing, origins, a stop with requests in flight
(each finding of the hostile-load review has a test here or, for uploaded images, in test_service_images.py;
counts and times CI-sized)."""

import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from velm_edge.service.server import CaptionService, ServiceOptions
from velm_edge.testing.scripts import load_script
from velm_edge.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


_h = load_script(ROOT / "benchmarks" / "hostile_load.py")  # the attacks and raw-socket helpers, for both
TOKEN, exchange, statuses, head, body_json = _h.TOKEN, _h.exchange, _h.statuses, _h.head, _h.body_json
health_during, attack, drip, idle, scene_png = _h.health_during, _h.attack, _h.drip, _h.idle, _h.a_scene_png


@pytest.mark.parametrize("behave, connections", [(drip, 64), (idle, 100)], ids=["64 dripping", "100 idle"])
def test_slow_and_idle_connections_do_not_lock_out_normal_requests(captioner, behave, connections):
    with CaptionService(captioner, ServiceOptions(port=0, workers=2, token=TOKEN)) as service:  # 5 s for a head
        stop = attack(service.port, connections, behave, 4.0)
        wait_until(lambda: stop.connected >= connections, 5, "every attacker to connect")
        served, asked = health_during(service.port, 3.0, TOKEN)
        stop.wait()
        assert served >= 0.6 * asked, f"{served} of {asked} served during the attack"
        after, asked_after = health_during(service.port, 0.5, TOKEN)  # their connections may still be open
        assert after == asked_after


def test_a_slow_header_drip_is_cut_at_the_total_deadline(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\n")
        t0, cut = time.monotonic(), None
        while cut is None and time.monotonic() - t0 < 8:
            try:
                s.sendall(b"X")
                s.settimeout(0.3)
                if s.recv(1) == b"":
                    cut = time.monotonic() - t0
            except TimeoutError:
                pass
            except OSError:
                cut = time.monotonic() - t0
    assert cut is not None and cut < 2.0 + 1.0  # timeout_s 2 s covers line and headers in total


def test_event_subscribers_are_capped_and_the_api_stays_available(service):
    socks, answers = [], []
    try:
        for _ in range(70):
            s = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            s.sendall(head(path="/v1/events", close=False))
            socks.append(s)
        for s in socks:
            answers.append(statuses(s.recv(4096)))
        assert answers.count([200]) == service.options.max_streams
        assert answers.count([503]) == 70 - service.options.max_streams
        assert statuses(exchange(service.port, head()))[0] == 200
        png = scene_png()
        assert statuses(exchange(service.port, head("POST", "/v1/caption", body=png)))[0] == 200
    finally:
        for s in socks:
            s.close()


def test_the_listen_backlog_takes_a_burst(service):
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    out = subprocess.run(["ss", "-ltnH", f"sport = :{service.port}"], capture_output=True, text=True).stdout
    backlog = int(out.split()[2])  # State Recv-Q Send-Q: for a listening socket Send-Q is the backlog
    assert backlog >= 128


# -- every error answered ----------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["length_penalty=2000", "length_penalty=1e308", "length_penalty=-inf",
                                   "length_penalty=nan", "beam_size=17", "max_length=100000",
                                   "time_budget_ms=inf"])
def test_decoding_options_out_of_range_get_400_with_the_range(service, query):
    answer = exchange(service.port, head("POST", f"/v1/caption?{query}", body=scene_png()))
    assert statuses(answer) == [400]
    assert query.split("=")[0] in body_json(answer)["error"]


@pytest.mark.parametrize("length, status", [("\u00b2", 400), ("1" * 5000, 413), ("12abc", 400)])
def test_unparseable_lengths_get_an_answer(service, length, status):
    data = f"POST /v1/caption HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
    answer = exchange(service.port, data)
    assert statuses(answer) == [status] and body_json(answer)["status"] == status


# -- framing ------------------------------------------------------------------------------------------------

def test_a_body_on_get_is_never_parsed_as_a_second_request(service):
    smuggled = head(path="/v1/info")
    answer = exchange(service.port, head(body=smuggled, close=False))
    assert statuses(answer) == [400]


def test_conflicting_content_lengths_are_refused(service):
    png = scene_png()
    data = head("POST", "/v1/caption", body=png, extra=(f"Content-Length: {len(png) - 10}",))
    assert statuses(exchange(service.port, data)) == [400]


def test_a_header_block_past_the_limit_is_answered_431_at_once_and_never_takes_a_thread(captioner):
    """64 connections that send 66 KB of headers and no blank line once each held a handler thread until the
    header deadline (a token-bearing request waited 4.5 s); now the selector answers each at once and closes it."""
    endless = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (b"X-Pad: " + b"a" * 1000 + b"\r\n") * 66
    with CaptionService(captioner, ServiceOptions(port=0, workers=2, token=TOKEN, timeout_s=5.0)) as service:
        t0 = time.monotonic()
        answer = exchange(service.port, endless)
        assert statuses(answer) == [431] and time.monotonic() - t0 < 1.0
        assert body_json(answer) == {"error": "the request's headers are too large", "status": 431}
        long_line = b"GET /" + b"a" * 70_000
        assert statuses(exchange(service.port, long_line)) == [414]
        socks = []
        try:
            for _ in range(64):
                s = socket.create_connection(("127.0.0.1", service.port), timeout=10)
                s.sendall(endless)  # and keep the connection open
                socks.append(s)
            t0 = time.monotonic()
            assert statuses(exchange(service.port, head(token=TOKEN)))[0] == 200
            assert time.monotonic() - t0 < 1.0
        finally:
            for s in socks:
                s.close()


def test_whitespace_before_a_header_colon_is_refused_not_ignored(service):
    """RFC 9112 5.1: a server MUST answer 400.  Ignored, "Content-Length : N" left its body to be served as a
    second request (h11, nginx and Go refuse it)."""
    smuggled = head(path="/v1/info")
    data = head(close=False, extra=(f"Content-Length : {len(smuggled)}",)) + smuggled
    assert statuses(exchange(service.port, data)) == [400]
    assert statuses(exchange(service.port, head(extra=("X-Note\t: a",)))) == [400]


def test_a_nul_in_a_header_value_is_refused(service):
    assert statuses(exchange(service.port, head(extra=("X-Note: a\x00b",)))) == [400]
    assert statuses(exchange(service.port, head(extra=("X-Note: a b",)))) == [200]  # other bytes are fine


def test_a_preflights_body_is_never_served_as_a_second_request(captioner):
    allowed = "http://127.0.0.1:9"
    with CaptionService(captioner, ServiceOptions(port=0, workers=1, allow_origin=(allowed,))) as service:
        smuggled = head(path="/v1/info")
        preflight = ("Origin: " + allowed, "Access-Control-Request-Method: POST")
        data = head("OPTIONS", "/v1/caption", body=smuggled, close=False, extra=preflight)
        assert statuses(exchange(service.port, data)) == [400]
        assert statuses(exchange(service.port, head("OPTIONS", "/v1/caption", extra=preflight))) == [204]


def test_absolute_form_targets_with_a_foreign_authority_are_refused(service):
    assert statuses(exchange(service.port, head(path="http://evil.example/health"))) == [400]
    assert statuses(exchange(service.port, head(path=f"http://127.0.0.1:{service.port}/health"))) == [200]


@pytest.mark.parametrize("host, status", [("localhost:80@evil.com", 403), ("localhost:evil.com", 403),
                                          ("LOCALHOST", 200), ("[::1]", 200), ("[::1]:8090", 200),
                                          ("127.0.0.1:8090", 200)])
def test_host_is_parsed_strictly(service, host, status):
    assert statuses(exchange(service.port, head(host=host))) == [status]


def test_two_host_headers_are_refused(service):
    assert statuses(exchange(service.port, head(extra=("Host: evil.example",)))) == [403]


class Event:
    def to_json(self) -> dict:
        return {"text": "a red circle"}


def test_head_on_a_stream_sends_headers_only(service):
    service.live.publish(Event())  # a GET would be sent this at once
    get = exchange(service.port, head("GET", "/v1/events"), timeout=1)
    assert b"a red circle" in get
    answer = exchange(service.port, head("HEAD", "/v1/events"), timeout=5)
    assert statuses(answer) == [200] and answer.endswith(b"\r\n\r\n")


def test_100_continue_only_after_the_token_is_checked(captioner):
    with CaptionService(captioner, ServiceOptions(port=0, workers=1, token=TOKEN)) as service:
        no_token = head("POST", "/v1/caption", extra=("Content-Length: 2600000", "Expect: 100-continue"))
        assert statuses(exchange(service.port, no_token)) == [401]  # no "100 Continue" first
        png = scene_png()
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
            s.sendall(head("POST", "/v1/caption", token=TOKEN, extra=(f"Content-Length: {len(png)}",
                                                                       "Expect: 100-continue")))
            assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(png)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert statuses(got) == [200]


def test_a_utf8_token_works_in_the_authorization_header(captioner):
    token = "clé-secrète"
    with CaptionService(captioner, ServiceOptions(port=0, workers=1, token=token)) as service:
        data = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n") + \
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        assert statuses(exchange(service.port, data)) == [200]


# -- origins -------------------------------------------------------------------------------------------------

def test_a_foreign_web_page_is_refused_and_an_allowed_one_gets_cors(captioner):
    allowed = "http://localhost:3000"
    with CaptionService(captioner, ServiceOptions(port=0, workers=1, allow_origin=(allowed,))) as service:
        png, port = scene_png(), service.port
        foreign = head("POST", "/v1/caption", body=png, extra=("Origin: http://127.0.0.1:9999",))
        assert statuses(exchange(port, foreign)) == [403]
        assert statuses(exchange(port, head(extra=("Origin: null",)))) == [403]
        own = exchange(port, head(host=f"127.0.0.1:{port}", extra=(f"Origin: http://127.0.0.1:{port}",)))
        assert statuses(own) == [200] and b"Access-Control-Allow-Origin" not in own
        cors = exchange(port, head(extra=(f"Origin: {allowed}",)))
        assert statuses(cors) == [200] and f"Access-Control-Allow-Origin: {allowed}".encode() in cors
        preflight = exchange(port, head("OPTIONS", "/v1/caption", extra=(f"Origin: {allowed}",
                                                                          "Access-Control-Request-Method: POST")))
        assert statuses(preflight) == [204] and b"POST" in preflight
        bad_preflight = head("OPTIONS", "/v1/caption", extra=("Origin: http://evil.example",
                                                              "Access-Control-Request-Method: POST"))
        assert statuses(exchange(port, bad_preflight)) == [403]


# -- what the server says of itself, and where it listens -----------------------------------------------------

def test_no_versions_in_server_and_no_paths_in_info(service):
    answer = exchange(service.port, head(path="/v1/info"))
    server = re.search(rb"^Server: (.*)\r$", answer, re.M).group(1)
    assert server == b"velm-edge"
    assert "path" not in body_json(answer)["bundle"] and "/" not in json.dumps(body_json(answer)["bundle"]["name"])


def test_ipv6_loopback_binds(captioner):
    try:
        socket.socket(socket.AF_INET6).close()
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with CaptionService(captioner, ServiceOptions(host="::1", port=0, workers=1)) as service:
        assert statuses(exchange(service.port, head(host="[::1]"), host="::1")) == [200]
        assert service.url == f"http://[::1]:{service.port}"
        with urllib.request.urlopen(f"{service.url}/health", timeout=10) as r:  # a real client, by the URL it prints
            assert json.load(r)["ok"]


# -- a graceful stop -----------------------------------------------------------------------------------------

def test_sigterm_with_requests_in_flight_answers_every_client(serve_process):
    proc, port = serve_process
    png = scene_png()
    sent = threading.Barrier(31)

    def client() -> list[int]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head("POST", "/v1/caption", body=png))
            sent.wait()
            return statuses(_h.read_to_close(s))

    with ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(client) for _ in range(30)]
        sent.wait()
        proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert all(a and a[0] in (200, 503) for a in answers), answers
    assert proc.wait(30) == 0


# -- a real browser: a page on another local origin ---------------------------------------------------------

PAGE = """<!doctype html><html><body><div id="out">waiting</div><script>
const png = Uint8Array.from(atob("__PNG__"), c => c.charCodeAt(0));
(async () => {
  const out = document.getElementById("out");
  for (let i = 0; i < 5; i++) {  // no-cors: the page cannot read the answer, but the service would caption it
    try { await fetch("__URL__/v1/caption", {method: "POST", mode: "no-cors", body: png}); } catch (e) {}
  }
  try {
    const r = await fetch("__URL__/v1/caption", {method: "POST", body: png});
    out.textContent = "caption:" + (await r.json()).text;
  } catch (e) { out.textContent = "refused"; }
})();
</script></body></html>"""


def page_server(directory) -> tuple[object, int]:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_in_chromium_a_foreign_page_gets_nothing_captioned_and_an_allowed_one_reads_its_caption(captioner, tmp_path):
    import base64

    foreign, foreign_port = page_server(tmp_path)
    allowed, allowed_port = page_server(tmp_path)
    options = ServiceOptions(port=0, workers=1, allow_origin=(f"http://127.0.0.1:{allowed_port}",))
    png = scene_png()
    try:
        with CaptionService(captioner, options) as service:
            (tmp_path / "page.html").write_text(PAGE.replace("__PNG__", base64.b64encode(png).decode())
                                                .replace("__URL__", service.url))
            chrome = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                      "--dump-dom"]

            def shown(port: int) -> str:
                dom = subprocess.run([*chrome, f"http://127.0.0.1:{port}/page.html"], capture_output=True, text=True,
                                     timeout=90).stdout
                return re.search(r'<div id="out">([^<]*)</div>', dom).group(1)

            assert shown(foreign_port) == "refused"
            assert service.served == 0  # none of the six requests was captioned
            expected = captioner.caption(cv2.imdecode(__import__("numpy").frombuffer(png, "uint8"), 1)).text
            assert shown(allowed_port) == f"caption:{expected}"
    finally:
        foreign.shutdown()
        allowed.shutdown()


def test_captions_still_queued_at_their_504_leave_the_queue(captioner, monkeypatch):
    options = ServiceOptions(port=0, workers=1, max_queue=4, timeout_s=0.5)
    with CaptionService(captioner, options) as service:
        release, real = threading.Event(), service.caption_image_bytes

        def slow_first(*request):  # the first caption holds the only captioning thread
            if not release.is_set():
                release.wait(10)
            return real(*request)

        monkeypatch.setattr(service, "caption_image_bytes", slow_first)
        png = scene_png()
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: statuses(exchange(service.port, head("POST", "/v1/caption",
                                                                                      body=png))), range(3)))
        assert answers == [[504]] * 3
        assert service.pending == 1  # only the one still running: the two queued behind it were dropped
        release.set()
        deadline = time.monotonic() + 10
        while service.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.pending == 0
        assert statuses(exchange(service.port, head("POST", "/v1/caption", body=png))) == [200]


def test_allow_origin_repeats_on_the_command_line():
    from velm_edge.tools.cli import build_parser
    from velm_edge.tools.flags import from_args

    given = build_parser().parse_args(["serve", "--allow-origin", "http://a.local:1", "--allow-origin", "*"])
    assert from_args(ServiceOptions, given).allow_origin == ("http://a.local:1", "*")
    assert from_args(ServiceOptions, build_parser().parse_args(["serve"])).allow_origin == ()
