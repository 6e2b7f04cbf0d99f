"""The Ollama and OpenAI protocols spoken by ``velm-edge serve``, so that Frigate, Home Assistant, Node-RED
and anything else that asks "a vision model server" to describe a snapshot can use velm-edge instead.

This module turns a protocol's JSON request into an ``Ask`` (the model, the images, streamed or not, text
or JSON) and a list of captions into that protocol's answer; ``server`` does the HTTP.  What a captioner
can and cannot do with these protocols, decided here and documented in README ("Frigate, Home Assistant
and Node-RED"):

- **The prompt is not followed.**  The answer to a request with images is their captions, one line per
  image in the order sent, each exactly the text ``velm-edge caption`` gives.  Each answer also carries
  the captions with their tags, detections and confidence as JSON in an extra field, ``velm``.
- **A request without images** (a "Hi" to check the server) gets a 200 that says what velm-edge does,
  with no captions.  With ``format`` / ``response_format`` it gets ``{"captions": []}``.
- **JSON output:** Ollama ``format: "json"`` or OpenAI ``response_format: {"type": "json_object"}`` gets
  the text ``{"captions": [{"text", "tags", "detections", "confidence"}, ...]}``, one entry per image.  A JSON schema
  cannot be followed, so it gets a 400 that says so.
- **Token counts** (``eval_count``, ``usage.completion_tokens``) are the captions' words and end tokens.
  The prompt is not read, so ``prompt_eval_count`` and ``prompt_tokens`` are 0.
- **Images** are base64 (Ollama ``images``) or base64 ``data:`` URLs (OpenAI ``image_url``).  Remote
  URLs are refused and never fetched.  At most ``MAX_IMAGES`` images are taken per request.
- Sampling ``options`` (temperature, seed, ...) are accepted and ignored.  The captions use the
  service's decoding, as ``/v1/caption`` does.
- **Streaming** sends the answer a word a chunk, in the protocol's framing, once the captions are made
  (tens of milliseconds): clients that join the chunks get the same text as without streaming.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus

from velm_edge.errors import cut, quoted
from velm_edge.service.refusal import Refusal

MAX_IMAGES = 8
NO_IMAGE_ANSWER = ("velm-edge describes images and cannot answer text. Send an image (Ollama: \"images\"; OpenAI: "
                   "an image_url with a data: URL) and the answer is its caption.")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)",
                       re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Ask:
    """What a compatible request asks of the captioner."""

    model: str
    images: tuple[bytes, ...]
    stream: bool
    as_json: bool  # answer {"captions": [...]} as the text


# -- requests -------------------------------------------------------------------------------------------

def read_json(body: bytes) -> dict:
    """The request body as a JSON object; Refusal 400 for anything else: nesting too deep, NaN and Infinity
    (not JSON, though Python's parser takes them), and any text but UTF-8 without a BOM (``json.loads`` would
    guess UTF-16 and UTF-32; RFC 8259 8.1 and Go's encoding/json, Ollama's, take UTF-8 only)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise Refusal(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {cut(str(e), 120)}") from None
    if not isinstance(value, dict):
        raise Refusal(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return value


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def _field(request: dict, name: str, kinds: tuple, default=None):
    value = request.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join({str: "a string", list: "a list", dict: "an object", bool: "true or false",
                             int: "a number", float: "a number"}[k] for k in kinds)
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{name} must be {names}", param=name)
    return value


def _model(request: dict) -> str:
    model = _field(request, "model", (str,), "")
    if not model:
        raise Refusal(HTTPStatus.BAD_REQUEST, "model is required", param="model")
    return model


def _base64_image(text, where: str) -> bytes:
    """The bytes of a base64 image (a ``data:`` URL is taken too); Refusal 400 when it is not one."""
    if not isinstance(text, str):
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{where} must be a base64 string")
    if not _is_data_url(text):
        return _decode_base64(text, where)
    m = _DATA_URL.fullmatch(text)
    if m is None:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{where} must be a base64 data: URL "
                      "(data:image/jpeg;base64,...)")
    if m.group(1) and not m.group(1).lower().startswith(("image/", "application/octet-stream")):
        raise Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"{where} is a data: URL of {quoted(m.group(1))}, not of an "
                      "image")
    return _decode_base64(m.group(3), where)


def _is_data_url(text: str) -> bool:
    return text[:5].lower() == "data:"  # a URL's scheme is case-insensitive (RFC 3986 3.1)


def _decode_base64(text: str, where: str) -> bytes:
    """Strict base64, except that line breaks are skipped, as Go's decoder (Ollama's) skips them."""
    try:
        data = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{where} is not valid base64") from None
    if not data:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{where} is empty")
    return data


def _images(values: list, where: str, taken: list[bytes]) -> None:
    for i, value in enumerate(values):
        if len(taken) >= MAX_IMAGES:
            raise Refusal(HTTPStatus.BAD_REQUEST, f"at most {MAX_IMAGES} images are captioned per request; "
                          "send the others in more requests")
        taken.append(_base64_image(value, f"{where}[{i}]"))


def _last_user_message(messages: list) -> tuple[int, dict] | None:
    """The last message whose role is "user", with its index: the turn being asked (the rest is history)."""
    for i in range(len(messages) - 1, -1, -1):
        if not isinstance(messages[i], dict):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"messages[{i}] must be an object", param="messages")
        if messages[i].get("role") == "user":
            return i, messages[i]
    return None


def _format(value) -> bool:
    """Ollama's ``format``: True for "json", False for none; Refusal for a schema or anything else."""
    if value in (None, ""):
        return False
    if value == "json":
        return True
    if isinstance(value, dict):
        raise Refusal(HTTPStatus.BAD_REQUEST, "format: a captioner cannot fill a JSON schema; send format "
                      "\"json\" for {\"captions\": [{\"text\", \"tags\", \"detections\", \"confidence\"}]}",
                      param="format")
    raise Refusal(HTTPStatus.BAD_REQUEST, "format must be \"json\" (a JSON schema cannot be followed)", param="format")


def ollama_generate(request: dict) -> Ask:
    """``POST /api/generate``: ``model``, ``prompt`` (not followed), ``images`` (base64), ``stream`` (default
    true, as in Ollama), ``format``."""
    images: list[bytes] = []
    _images(_field(request, "images", (list,), []), "images", images)
    return Ask(_model(request), tuple(images), _field(request, "stream", (bool,), True),
               _format(request.get("format")))


def ollama_chat(request: dict) -> Ask:
    """``POST /api/chat``: the images of the last user message are captioned (earlier turns are history)."""
    asked = _last_user_message(_field(request, "messages", (list,), []))
    images: list[bytes] = []
    if asked is not None:
        i, message = asked
        _images(_field(message, "images", (list,), []), f"messages[{i}].images", images)
    return Ask(_model(request), tuple(images), _field(request, "stream", (bool,), True),
               _format(request.get("format")))


def openai_chat(request: dict) -> Ask:
    """``POST /v1/chat/completions``: the ``image_url`` parts (base64 ``data:`` URLs) of the last user message;
    ``stream`` (default false, as in OpenAI); ``response_format``."""
    messages = _field(request, "messages", (list,), None)
    if not messages:
        raise Refusal(HTTPStatus.BAD_REQUEST, "messages must be a non-empty list", param="messages")
    asked = _last_user_message(messages)
    images: list[bytes] = []
    i, content = (asked[0], asked[1].get("content")) if asked is not None else (0, None)
    for j, part in enumerate(content if isinstance(content, list) else []):
        where = f"messages[{i}].content[{j}]"
        if not isinstance(part, dict):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"{where} must be an object", param="messages")
        if part.get("type") != "image_url":
            continue
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if not isinstance(url, str):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"{where}.image_url.url must be a string", param="messages")
        if not _is_data_url(url):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"{where}: remote image URLs are not fetched (velm-edge "
                          "works offline); send the image as a data: URL", param="messages")
        _images([url], f"{where}.image_url", images)
    response_format = _field(request, "response_format", (dict,), {})
    kind = response_format.get("type", "text")
    if kind not in ("text", "json_object"):
        raise Refusal(HTTPStatus.BAD_REQUEST, f"response_format {quoted(kind)} cannot be followed by a captioner; use "
                      "\"json_object\" for {\"captions\": [{\"text\", \"tags\", \"detections\", \"confidence\"}]} "
                      "or \"text\"",
                      param="response_format")
    return Ask(_model(request), tuple(images), _field(request, "stream", (bool,), False), kind == "json_object")


# -- answers --------------------------------------------------------------------------------------------

def answer_text(captions: list, as_json: bool) -> str:
    """The answer: one caption per line, or the documented JSON object; NO_IMAGE_ANSWER without images."""
    if as_json:
        return json.dumps({"captions": [_caption_json(c) for c in captions]})
    return "\n".join(c.text for c in captions) if captions else NO_IMAGE_ANSWER


def _caption_json(caption) -> dict:
    return {"text": caption.text, "tags": [t.to_json() for t in caption.tags],
            "detections": [d.to_json() for d in caption.detections], "confidence": round(caption.confidence, 3)}


def extra(captions: list) -> dict:
    """The ``velm`` field of every answer: each image's caption as ``/v1/caption`` gives it."""
    return {"captions": [c.to_json() for c in captions]}


def pieces(text: str) -> list[str]:
    """``text`` in streamed pieces, a word each (with the space or line break before it); they join to it."""
    return re.findall(r"\s*\S+", text) or [text]


def token_count(captions: list) -> int:
    return sum(len(c.tokens) for c in captions)


def finish_reason(captions: list) -> str:
    """"stop", or "length" when a caption was cut by its length or time limit."""
    return "stop" if all(c.complete for c in captions) else "length"


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Model:
    """A served bundle as the two protocols list it (``Model.of(bundle)``)."""

    name: str  # "velm-photo"
    size: int  # bytes of the bundle's files
    digest: str  # sha256 hex of its manifest
    modified: float  # the manifest's mtime (Unix seconds)
    details: dict  # format, family, parameter_size, quantization_level
    license: str

    @classmethod
    def of(cls, bundle) -> Model:
        m = bundle.manifest
        manifest = bundle.root / "manifest.json"
        parameters = m.get("model", {}).get("parameters")
        return cls(name=f"velm-{m.get('name') or bundle.root.stem}",
                   size=sum(f.get("bytes", 0) for f in m.get("files", {}).values()) + manifest.stat().st_size,
                   digest=hashlib.sha256(manifest.read_bytes()).hexdigest(), modified=manifest.stat().st_mtime,
                   details={"parent_model": "", "format": "tflite", "family": "velm", "families": ["velm"],
                            "parameter_size": f"{parameters / 1e6:.1f}M" if parameters else "",
                            "quantization_level": m.get("precision", "")},
                   license=(m.get("training") or {}).get("terms", ""))

    def check(self, asked) -> None:
        """Refusal 404 unless ``asked`` names this model: Ollama names carry a tag (``velm-photo:latest``),
        OpenAI names do not."""
        if asked not in (self.name, f"{self.name}:latest"):
            raise Refusal(HTTPStatus.NOT_FOUND, f"model {quoted(str(asked))} not found: this server has "
                          f"{self.name!r}", param="model")

    def ollama(self) -> dict:
        return {"name": f"{self.name}:latest", "model": f"{self.name}:latest",
                "modified_at": datetime.fromtimestamp(self.modified, timezone.utc).isoformat(),
                "size": self.size, "digest": self.digest, "details": self.details}

    def openai(self) -> dict:
        return {"id": self.name, "object": "model", "created": int(self.modified), "owned_by": "velm-edge"}


def ollama_done(captions: list, started: float) -> dict:
    """The last (or only) object of an Ollama answer: ``done`` with the counts and durations (ns)."""
    total_ns = int((time.monotonic() - started) * 1e9)
    decode_ns = int(sum(c.timings_ms.get("decode", 0.0) for c in captions) * 1e6)
    return {"done": True, "done_reason": finish_reason(captions), "total_duration": total_ns,
            "load_duration": 0, "prompt_eval_count": 0, "prompt_eval_duration": 0,
            "eval_count": token_count(captions), "eval_duration": decode_ns, "velm": extra(captions)}


def ollama_answer(route: str, ask: Ask, captions: list, started: float) -> list[dict]:
    """The NDJSON objects of ``/api/generate`` or ``/api/chat``: a piece each then ``done`` when streamed,
    one object otherwise."""
    text = answer_text(captions, ask.as_json)
    head = {"model": ask.model, "created_at": iso_now()}

    def piece(part: str) -> dict:
        if route == "chat":
            return {**head, "message": {"role": "assistant", "content": part}}
        return {**head, "response": part}

    done = ollama_done(captions, started)
    if not ask.stream:
        return [{**piece(text), **done}]
    return [{**piece(p), "done": False} for p in pieces(text)] + [{**piece(""), **done}]


def openai_answer(ask: Ask, captions: list, request: dict) -> list[dict]:
    """A chat completion, or its chunks when streamed (the caller sends ``data: [DONE]`` after them)."""
    text = answer_text(captions, ask.as_json)
    head = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": ask.model,
            "system_fingerprint": "velm-edge"}
    usage = {"prompt_tokens": 0, "completion_tokens": token_count(captions), "total_tokens": token_count(captions)}
    reason = finish_reason(captions)
    if not ask.stream:
        return [{**head, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "logprobs": None,
             "finish_reason": reason}], "usage": usage, "velm": extra(captions)}]
    chunk = {**head, "object": "chat.completion.chunk"}
    first = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                    "finish_reason": None}]}]
    words = [{**chunk, "choices": [{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}]}
             for p in pieces(text)]
    last = [{**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}],
             "velm": extra(captions)}]
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        last.append({**chunk, "choices": [], "usage": usage})
    return first + words + last


def openai_error(status: int, why: str, param: str | None = None) -> dict:
    """OpenAI's error object."""
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = {401: "invalid_api_key", 404: "model_not_found" if param == "model" else "not_found"}.get(status)
    return {"error": {"message": why, "type": kind, "param": param, "code": code}}
