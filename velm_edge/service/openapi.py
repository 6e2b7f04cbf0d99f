"""The caption service described as OpenAPI 3.0 (``GET /v1/openapi.json``), built from its route table so
the description cannot list a route that does not exist or miss one that does."""

from __future__ import annotations

from velm_edge import __version__
from velm_edge.specs import boolean

_ERROR = {"description": "an error: what to fix", "content": {"application/json": {"schema": {
    "type": "object", "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}}}}
_JSON = {"application/json": {"schema": {"type": "object"}}}
_TAG = {"type": "object", "required": ["label", "word", "score"],
        "properties": {"label": {"type": "string"}, "word": {"type": ["string", "null"]}, "score": {"type": "number"}}}
_DETECTION = {"type": "object", "required": ["label", "score", "box"],
              "properties": {"label": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
                             "box": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
                                     "description": "x_min, y_min, x_max, y_max in pixels of the image sent"}}}
_CAPTION = {"type": "object", "required": ["text", "tokens", "score", "confidence", "tags", "detections", "complete",
                                           "timings_ms", "image"],
            "properties": {"text": {"type": "string"}, "tokens": {"type": "array", "items": {"type": "integer"}},
                           "score": {"type": "number"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                           "tags": {"type": "array", "items": _TAG}, "complete": {"type": "boolean"},
                           "detections": {"type": "array", "items": _DETECTION},
                           "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
                           "image": {"type": "object", "properties": {
                               "type": {"type": "string", "enum": ["jpeg", "png", "bmp"]},
                               "width": {"type": "integer"}, "height": {"type": "integer"}}}}}

OPERATIONS = {  # (method, path) -> what it does and what it answers
    ("POST", "/v1/caption"): {
        "summary": "Caption an image sent as the request body (JPEG, PNG or BMP, sniffed from the bytes)",
        "requestBody": {"required": True, "content": {t: {"schema": {"type": "string", "format": "binary"}}
                                                      for t in ("image/jpeg", "image/png", "image/bmp",
                                                                "application/octet-stream")}},
        "responses": {"200": {"description": "the caption", "content": {"application/json": {"schema": _CAPTION}}},
                      **{str(code): _ERROR for code in (400, 401, 403, 408, 411, 413, 415, 503, 504)}}},
    ("GET", "/v1/info"): {"summary": "The bundle, the runtime and the limits",
                          "responses": {"200": {"description": "the summary", "content": _JSON}}},
    ("GET", "/v1/latest"): {"summary": "The newest caption of the live source (null before the first)",
                            "responses": {"200": {"description": "a caption event", "content": _JSON},
                                          "404": _ERROR}},
    ("GET", "/v1/events"): {"summary": "The live captions as server-sent events, one JSON caption event each",
                            "responses": {"200": {"description": "an event stream",
                                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                                          "404": _ERROR}},
    ("GET", "/v1/openapi.json"): {"summary": "This description",
                                  "responses": {"200": {"description": "OpenAPI 3.0", "content": _JSON}}},
    ("GET", "/health"): {"summary": "Whether the service is up, with counters",
                         "responses": {"200": {"description": "ok", "content": _JSON}}},
}
_OLLAMA = "Ollama-compatible (velm_edge.service.compat: captions, not prompt answers): "
_OPENAI = "OpenAI-compatible (velm_edge.service.compat: captions, not prompt answers): "
_PROTOCOL_ERRORS = {str(code): _ERROR for code in (400, 404, 413, 415, 503, 504)}
for _path, _what in {"/api/generate": "caption the base64 images (one line each); NDJSON when stream is true",
                     "/api/chat": "caption the images of the last user message; NDJSON when stream is true",
                     "/api/show": "the served model", "/v1/chat/completions": "caption the image_url data: URLs of "
                     "the last user message; server-sent chunks when stream is true",
                     "/chat/completions": "the same as /v1/chat/completions (a base URL without /v1)"}.items():
    OPERATIONS[("POST", _path)] = {
        "summary": (_OPENAI if "completions" in _path else _OLLAMA) + _what,
        "requestBody": {"required": True, "content": _JSON},
        "responses": {"200": {"description": "the answer", "content": _JSON}, **_PROTOCOL_ERRORS}}
for _path, _what in {"/": "plain text: the server is running", "/api/version": "the version",
                     "/api/tags": "the served model", "/api/ps": "the loaded model", "/v1/models": "the served model",
                     "/models": "the served model (a base URL without /v1)"}.items():
    OPERATIONS[("GET", _path)] = {"summary": (_OPENAI if "models" in _path else _OLLAMA) + _what,
                                  "responses": {"200": {"description": _what, "content": _JSON}}}


SCHEMA_TYPES = {int: "integer", float: "number", boolean: "boolean", str: "string"}


def describe(routes: dict[tuple[str, str], str], decode_keys) -> dict:
    """The OpenAPI document of ``routes`` (the handler's own table); ``decode_keys``: the caption's query keys
    (decoding and detection)."""
    paths: dict = {}
    for method, path in sorted(routes):
        op = dict(OPERATIONS[(method, path)])
        op["operationId"] = routes[(method, path)].removeprefix("native_")  # the ids of before: caption, info, ...
        if (method, path) == ("POST", "/v1/caption"):
            op["parameters"] = [{"name": k.name, "in": "query", "required": False, "description": k.help,
                                 "schema": {"type": SCHEMA_TYPES.get(k.type, "string")}} for k in decode_keys]
        op["responses"] = {**op["responses"], "401": _ERROR, "403": _ERROR}
        paths.setdefault(path, {})[method.lower()] = op
    return {"openapi": "3.0.3",
            "info": {"title": "velm-edge caption service", "version": __version__,
                     "description": "Local, offline image captions. Loopback only unless started with a token."},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "paths": paths}
