"""The Ollama- and OpenAI-compatible routes of ``velm-edge serve``: their answers, their semantics (captions,
not prompt answers) and their guards under hostile requests.  The real client libraries (PyPI and npm)
and Node-RED are in tests/test_compat_clients.py."""

import base64
import http.client
import json
import random
import socket
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from velm_edge.service import compat
from velm_edge.service.server import CaptionService, ServiceOptions
from velm_edge.synth import scenes

TOKEN = "compat-secret"


def scene_jpeg(seed: int = 7, size: int = 96) -> bytes:
    ok, buf = cv2.imencode(".jpg", scenes.generate(seed, scenes.SceneConfig(size=size))[0])
    assert ok
    return buf.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def call(port: int, method: str, path: str, body=None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, bytes, dict]:
    """One request on a fresh connection: (status, body, headers).  A dict body is sent as JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (8-bit RGB)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def service(captioner):
    with CaptionService(captioner, ServiceOptions(port=0, workers=2, timeout_s=5.0)) as s:
        yield s


def direct(captioner, data: bytes) -> str:
    return captioner.caption(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)).text


def test_every_generate_and_chat_answers_the_caption_streamed_or_not(service, captioner):
    image = scene_jpeg()
    expected = direct(captioner, image)
    model = service.model.name
    for path, body in [("/api/generate", {"model": model, "prompt": "describe", "images": [b64(image)]}),
                       ("/api/chat", {"model": f"{model}:latest", "messages": [
                           {"role": "user", "content": "describe", "images": [b64(image)]}]})]:
        status, answer, headers = call(service.port, "POST", path, {**body, "stream": False})
        one = json.loads(answer)
        text = one["response"] if path == "/api/generate" else one["message"]["content"]
        assert status == 200 and text == expected and one["done"] is True
        assert one["eval_count"] == len(one["velm"]["captions"][0]["tokens"]) > 0
        status, answer, headers = call(service.port, "POST", path, body)  # Ollama streams by default
        lines = [json.loads(line) for line in answer.decode().splitlines()]
        assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
        assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True] and len(lines) > 2
        key = (lambda x: x["response"]) if path == "/api/generate" else (lambda x: x["message"]["content"])
        assert "".join(key(x) for x in lines) == expected
    content = [{"type": "text", "text": "What is in this image?"},
               {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(image)}", "detail": "low"}}]
    for path in ("/v1/chat/completions", "/chat/completions"):
        status, answer, _ = call(service.port, "POST", path, {"model": model, "messages": [
            {"role": "user", "content": content}]})
        completion = json.loads(answer)
        assert status == 200 and completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["content"] == expected
        assert completion["usage"]["completion_tokens"] == len(completion["velm"]["captions"][0]["tokens"])
        status, answer, headers = call(service.port, "POST", path, {"model": model, "stream": True, "messages": [
            {"role": "user", "content": content}], "stream_options": {"include_usage": True}})
        events = [e.removeprefix("data: ") for e in answer.decode().split("\n\n") if e]
        assert status == 200 and headers["Content-Type"] == "text/event-stream" and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == expected
        assert chunks[-1]["usage"]["completion_tokens"] > 0 and chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_several_images_get_a_caption_each_in_order(service, captioner):
    images = [scene_jpeg(seed) for seed in (11, 12, 13)]
    status, answer, _ = call(service.port, "POST", "/api/generate", {
        "model": service.model.name, "prompt": "x", "images": [b64(i) for i in images], "stream": False})
    assert status == 200
    assert json.loads(answer)["response"].split("\n") == [direct(captioner, i) for i in images]


def test_json_output_is_the_documented_object_and_a_schema_is_refused(service, captioner):
    image = scene_jpeg()
    status, answer, _ = call(service.port, "POST", "/api/generate", {
        "model": service.model.name, "prompt": "x", "images": [b64(image)], "stream": False, "format": "json"})
    captions = json.loads(json.loads(answer)["response"])["captions"]
    assert status == 200 and [c["text"] for c in captions] == [direct(captioner, image)]
    assert set(captions[0]) == {"text", "tags", "detections", "confidence"}
    status, answer, _ = call(service.port, "POST", "/v1/chat/completions", {
        "model": service.model.name, "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and json.loads(json.loads(answer)["choices"][0]["message"]["content"]) == {"captions": []}
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    status, answer, _ = call(service.port, "POST", "/api/generate", {
        "model": service.model.name, "prompt": "x", "images": [b64(image)], "stream": False, "format": schema})
    assert status == 400 and "JSON schema" in json.loads(answer)["error"]
    status, answer, _ = call(service.port, "POST", "/v1/chat/completions", {
        "model": service.model.name, "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    error = json.loads(answer)["error"]
    assert status == 400 and error["type"] == "invalid_request_error" and error["param"] == "response_format"


def test_a_text_only_request_gets_a_clear_answer(service):
    for path, body, text in [
            ("/api/generate", {"prompt": "Hi", "stream": False}, lambda a: a["response"]),
            ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}], "stream": False},
             lambda a: a["message"]["content"]),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]},
             lambda a: a["choices"][0]["message"]["content"])]:
        status, answer, _ = call(service.port, "POST", path, {"model": service.model.name, **body})
        assert status == 200 and text(json.loads(answer)) == compat.NO_IMAGE_ANSWER


def test_models_are_listed_and_unknown_ones_get_each_protocols_error(service):
    name = service.model.name
    assert name == "velm-shapes"
    status, answer, _ = call(service.port, "GET", "/api/tags")
    assert status == 200 and [m["name"] for m in json.loads(answer)["models"]] == [f"{name}:latest"]
    status, answer, _ = call(service.port, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(answer)["data"]] == [name]
    status, answer, _ = call(service.port, "POST", "/api/show", {"model": name})
    assert status == 200 and "vision" in json.loads(answer)["capabilities"]
    status, answer, _ = call(service.port, "POST", "/api/generate", {"model": "llava", "prompt": "x"})
    assert status == 404 and "llava" in json.loads(answer)["error"]
    status, answer, _ = call(service.port, "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": [
        {"role": "user", "content": "x"}]})
    assert status == 404 and json.loads(answer)["error"]["code"] == "model_not_found"
    for path in ("/api/version", "/api/ps", "/"):
        assert call(service.port, "GET", path)[0] == 200


def test_the_token_is_required_when_set_and_any_key_works_without(captioner):
    image = scene_jpeg()
    body = {"model": "velm-shapes", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(image)}"}}]}]}
    with CaptionService(captioner, ServiceOptions(port=0, workers=1)) as open_service:
        assert call(open_service.port, "POST", "/v1/chat/completions", body,
                    {"Authorization": "Bearer sk-anything"})[0] == 200
    with CaptionService(captioner, ServiceOptions(port=0, workers=1, token=TOKEN)) as guarded:
        status, answer, _ = call(guarded.port, "POST", "/v1/chat/completions", body, {"Authorization": "Bearer sk-x"})
        assert status == 401 and json.loads(answer)["error"]["type"] == "authentication_error"
        assert call(guarded.port, "POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert call(guarded.port, "GET", "/api/tags")[0] == 401


class _Watched(BaseHTTPRequestHandler):
    """A web server the hostile requests name in remote image URLs: it must never be asked for anything."""

    hits: list = []

    def do_GET(self):
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_five_hundred_hostile_requests_on_the_new_routes_are_refused_and_the_service_still_captions(captioner):
    rng = random.Random(22)
    image = scene_jpeg()
    expected = direct(captioner, image)
    options = ServiceOptions(port=0, workers=2, max_body_bytes=400_000, max_pixels=1_000_000, timeout_s=5.0,
                             max_queue=64)
    watched = ThreadingHTTPServer(("127.0.0.1", 0), _Watched)
    threading.Thread(target=watched.serve_forever, daemon=True).start()
    remote = f"http://127.0.0.1:{watched.server_address[1]}/snapshot.jpg"

    def generate(images, **more) -> dict:
        return {"model": "velm-shapes", "prompt": "describe", "images": images, "stream": False, **more}

    def openai(urls, **more) -> dict:
        return {"model": "velm-shapes", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": u}} for u in urls]}], **more}

    def chat(images) -> dict:
        return {"model": "velm-shapes", "stream": False, "messages": [{"role": "user", "content": "x",
                                                                       "images": images}]}

    png_bomb = png_claiming(20_000, 20_000)
    cases: list[tuple[str, str, object, set]] = []  # (category, path, body, acceptable statuses)
    for _ in range(60):  # bad base64: wrong alphabet, cut padding, spaces, empty
        bad = rng.choice(["!!!!", b64(image)[:-3], b64(image)[:101], " " + b64(image), "", "data:", "a" * 5,
                          "data:image/jpeg;base64," * 5000 + b64(image)])  # data: URLs nested 5,000 deep
        cases.append(("base64", "/api/generate", generate([bad]), {400}))
        cases.append(("base64", "/v1/chat/completions", openai([f"data:image/jpeg;base64,{bad}"]), {400}))
    for kind in ["text/html", "application/pdf", "text/plain", "video/mp4", "image/svg+xml", "image/gif"] * 10:
        data = b"<svg/>" if "svg" in kind else b"GIF89a" + bytes(30) if "gif" in kind else b"%PDF-1.4 hello"
        cases.append(("data URL type", "/v1/chat/completions", openai([f"data:{kind};base64,{b64(data)}"]), {415}))
    for scheme in ["http://", "https://", "file:///etc/passwd#", "ftp://", "//"] * 12:
        url = remote if scheme == "http://" else scheme + "127.0.0.1/x.jpg"
        cases.append(("remote URL", "/v1/chat/completions", openai([url]), {400}))
        cases.append(("remote URL", "/api/generate", generate([url]), {400}))
    for n in (9, 50) * 10:  # too many images
        cases.append(("many images", "/api/generate", generate([b64(image)] * n), {400, 413}))
        cases.append(("many images", "/v1/chat/completions", openai([f"data:image/jpeg;base64,{b64(image)}"] * n),
                      {400, 413}))
    for _ in range(20):  # huge messages: many turns (valid, no image in the last one), deep nesting, too large
        cases.append(("huge messages", "/api/chat", {"model": "velm-shapes", "stream": False, "messages": [
            {"role": "user", "content": "hello"}] * 10_000}, {200}))
        cases.append(("huge messages", "/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000, {400}))
        cases.append(("huge messages", "/api/chat", b'{"messages": ' + b"[" * 50_000, {400}))
        cases.append(("huge messages", "/v1/chat/completions", openai([]) | {"messages": [
            {"role": "user", "content": "x" * 500_000}]}, {413}))
    for body in [b"", b"not json", b"[1, 2]", b"\xff\xfe", b"null", b'"string"', b"{"] * 5:  # not a JSON object
        for path in ("/api/generate", "/api/chat", "/v1/chat/completions", "/api/show"):
            cases.append(("not an object", path, body, {400}))
    for body in [{"model": 5}, {"model": "velm-shapes", "images": "abc"}, {"model": "velm-shapes", "images": [5]},
                 {"model": "velm-shapes", "stream": "yes"}, {"model": "velm-shapes", "format": "yaml"},
                 {"prompt": "no model"}] * 5:
        cases.append(("wrong types", "/api/generate", body, {400}))
    for body in [{"model": "velm-shapes", "messages": {}}, {"model": "velm-shapes", "messages": []},
                 {"model": "velm-shapes", "messages": ["x"]}, {"model": "velm-shapes", "messages": [
                     {"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]},
                 {"model": "velm-shapes", "messages": [{"role": "user", "content": ["x"]}]}] * 5:
        cases.append(("wrong types", "/v1/chat/completions", body, {400}))
    for model in ["llava", "velm-photo-x", "", "../../etc", "velm-shapes:7b"] * 4:
        cases.append(("unknown model", "/api/generate", generate([b64(image)]) | {"model": model}, {400, 404}))
        cases.append(("unknown model", "/v1/chat/completions", openai([]) | {"model": model}, {400, 404}))
    for _ in range(20):  # image bombs and damaged images inside valid requests
        cases.append(("bomb", "/api/generate", generate([b64(png_bomb)]), {413}))
        cut = image[:rng.randrange(10, len(image) - 10)]
        cases.append(("truncated", "/v1/chat/completions", openai([f"data:image/jpeg;base64,{b64(cut)}"]), {400, 415}))
    for _ in range(10):  # valid ones among them: captioned, or told to retry
        cases.append(("valid", "/api/generate", generate([b64(image)]), {200, 503}))
        cases.append(("valid", "/v1/chat/completions", openai([f"data:image/jpeg;base64,{b64(image)}"]), {200, 503}))
    for path in ("/api/generate", "/api/chat", "/v1/chat/completions", "/api/show") * 5:  # wrong method
        cases.append(("method", path, None, {405}))
    assert len(cases) >= 500, len(cases)

    with CaptionService(captioner, options) as service:
        def send(case):
            category, path, body, ok = case
            method = "GET" if body is None else "POST"
            status, answer, _ = call(service.port, method, path, body)
            if status == 200 and category == "valid":
                got = json.loads(answer)
                text = got["response"] if "response" in got else got["choices"][0]["message"]["content"]
                assert text == expected
            if status >= 400 and status != 503:  # every error is the route's protocol's shape
                error = json.loads(answer)["error"]
                assert isinstance(error, dict if "completions" in path else str), (path, answer[:200])
            return category, status, ok

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, cases))
        wrong = [(c, got, ok) for c, got, ok in results if got not in ok]
        assert not wrong, f"{len(wrong)} of {len(results)} answered wrongly, e.g. {wrong[:5]}"
        assert _Watched.hits == []  # no remote URL was ever fetched
        status, answer, _ = call(service.port, "POST", "/api/generate", generate([b64(image)]))
        assert status == 200 and json.loads(answer)["response"] == expected
    watched.shutdown()


def test_a_foreign_page_and_a_foreign_host_are_refused_on_the_new_routes(service):
    body = {"model": service.model.name, "prompt": "x", "stream": False}
    for path in ("/api/generate", "/v1/chat/completions"):
        status, _, _ = call(service.port, "POST", path, body, {"Origin": "http://evil.example"})
        assert status == 403
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        s.sendall(b"GET /api/tags HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 403")


def test_an_error_quotes_at_most_80_characters_of_what_it_was_given(service):
    """A 5 MB response_format.type once came back whole in a 5 MB 400."""
    huge = "x" * 5_000_000
    status, answer, _ = call(service.port, "POST", "/v1/chat/completions", {
        "model": service.model.name, "response_format": {"type": huge},
        "messages": [{"role": "user", "content": "x"}]})
    error = json.loads(answer)["error"]
    assert status == 400 and error["param"] == "response_format" and len(answer) < 1000
    assert "'xxxx" in error["message"] and "5000002 characters" in error["message"]


def test_data_urls_in_any_case_and_base64_with_line_breaks_are_taken_as_ollama_and_browsers_do(service, captioner):
    image = scene_jpeg()
    folded = "\r\n".join(b64(image)[i:i + 76] for i in range(0, len(b64(image)), 76))  # MIME's 76-column lines
    status, answer, _ = call(service.port, "POST", "/api/generate", {
        "model": service.model.name, "prompt": "x", "images": [folded], "stream": False})
    assert status == 200 and json.loads(answer)["response"] == direct(captioner, image)
    status, answer, _ = call(service.port, "POST", "/v1/chat/completions", {
        "model": service.model.name, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "DATA:image/jpeg;BASE64," + b64(image)}}]}]})
    assert status == 200 and json.loads(answer)["choices"][0]["message"]["content"] == direct(captioner, image)
    status, answer, _ = call(service.port, "POST", "/api/generate", {
        "model": service.model.name, "prompt": "x", "images": [b64(image)[:-4] + "@@@@"], "stream": False})
    assert status == 400  # otherwise still strict


@pytest.mark.parametrize("body", [b'{"model": "x", "options": {"temperature": NaN}}', b'{"x": Infinity}',
                                  b'{"x": -Infinity}', '{"model": "x"}'.encode("utf-16"),
                                  b'\xef\xbb\xbf{"model": "x"}', '{"model": "x"}'.encode("utf-32")],
                         ids=["NaN", "Infinity", "-Infinity", "UTF-16", "UTF-8 BOM", "UTF-32"])
def test_json_that_is_not_plain_utf8_json_is_refused(service, body):
    status, answer, _ = call(service.port, "POST", "/api/generate", body)
    assert status == 400 and "not JSON" in json.loads(answer)["error"]
