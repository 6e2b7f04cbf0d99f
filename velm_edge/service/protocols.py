"""The Ollama and OpenAI routes of ``velm-edge serve``: ``ProtocolRoutes``, the part of the service's request
handler that speaks them (what a request asks and how the answer is built is ``compat``'s; reading the
body, checking and captioning images is the service's, shared with ``/v1/caption``)."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from urllib.parse import urlsplit

from velm_edge import __version__
from velm_edge.runtime.captioner import Caption
from velm_edge.service import compat
from velm_edge.service.compat import Ask
from velm_edge.service.refusal import Refusal

# the Ollama and OpenAI protocols (velm_edge.service.compat), on the same port; an OpenAI base URL works with
# or without /v1
OLLAMA_ROUTES = {("GET", "/"): "root", ("GET", "/api/version"): "ollama_version", ("GET", "/api/tags"): "ollama_tags",
                 ("GET", "/api/ps"): "ollama_ps", ("POST", "/api/show"): "ollama_show",
                 ("POST", "/api/generate"): "ollama_generate", ("POST", "/api/chat"): "ollama_chat"}
OPENAI_ROUTES = {("GET", "/v1/models"): "openai_models", ("GET", "/models"): "openai_models",
                 ("POST", "/v1/chat/completions"): "openai_chat", ("POST", "/chat/completions"): "openai_chat"}
OPENAI_PATHS = frozenset(path for _, path in OPENAI_ROUTES)


class ProtocolRoutes:
    """Mixed into the service's handler (a ``GuardedHandler`` with ``service``, ``_body`` and ``refuse``)."""

    def error_body(self, status: HTTPStatus, why: str, param: str | None = None) -> dict:
        if urlsplit(getattr(self, "path", "")).path in OPENAI_PATHS:  # no path: a malformed request line
            return compat.openai_error(int(status), why, param)
        return super().error_body(status, why, param)  # Ollama reads {"error": "..."}, as /v1/caption answers

    def _ask(self, parse) -> tuple[dict, Ask, list[Caption]] | None:
        """Read a protocol's JSON request, check its model, caption its images; None after refusing it."""
        data = self._body("a JSON request")
        if data is None:
            return None
        service = self.service
        try:
            request = compat.read_json(data)
            ask = parse(request)
            service.model.check(ask.model)
            captions = []
            for i, image in enumerate(ask.images):
                try:
                    service.inspect(image)
                    captions.append(service.caption(image, service.captioner.options))
                except Refusal as e:
                    raise Refusal(e.status, f"image {i + 1}: {e}" if len(ask.images) > 1 else str(e),
                                  e.headers, e.param) from None
        except Refusal as e:
            self.refuse(e.status, str(e), e.headers, param=e.param)
            return None
        return request, ask, captions

    def _ollama(self, route: str, parse) -> None:
        started = time.monotonic()
        asked = self._ask(parse)
        if asked is None:
            return
        _, ask, captions = asked
        answer = compat.ollama_answer(route, ask, captions, started)
        if ask.stream:
            self.reply(HTTPStatus.OK, "".join(json.dumps(o) + "\n" for o in answer).encode(), "application/x-ndjson")
        else:
            self.reply_json(HTTPStatus.OK, answer[0])

    def ollama_generate(self) -> None:
        self._ollama("generate", compat.ollama_generate)

    def ollama_chat(self) -> None:
        self._ollama("chat", compat.ollama_chat)

    def openai_chat(self) -> None:
        asked = self._ask(compat.openai_chat)
        if asked is None:
            return
        request, ask, captions = asked
        answer = compat.openai_answer(ask, captions, request)
        if ask.stream:
            events = "".join(f"data: {json.dumps(o)}\n\n" for o in answer) + "data: [DONE]\n\n"
            self.reply(HTTPStatus.OK, events.encode(), "text/event-stream")
        else:
            self.reply_json(HTTPStatus.OK, answer[0])

    def root(self) -> None:
        self.reply(HTTPStatus.OK, b"velm-edge is running (Ollama- and OpenAI-compatible API)\n",
                   "text/plain; charset=utf-8")

    def ollama_version(self) -> None:
        self.reply_json(HTTPStatus.OK, {"version": __version__})

    def ollama_tags(self) -> None:
        self.reply_json(HTTPStatus.OK, {"models": [self.service.model.ollama()]})

    def ollama_ps(self) -> None:
        loaded = {**self.service.model.ollama(), "expires_at": "2999-12-31T23:59:59Z", "size_vram": 0}
        self.reply_json(HTTPStatus.OK, {"models": [loaded]})

    def ollama_show(self) -> None:
        data = self._body("a JSON request")
        if data is None:
            return
        model, bundle = self.service.model, self.service.captioner.bundle
        try:
            request = compat.read_json(data)
            model.check(request.get("model") or request.get("name"))  # older clients send "name"
        except Refusal as e:
            self.refuse(e.status, str(e), e.headers, param=e.param)
            return
        m = bundle.manifest
        self.reply_json(HTTPStatus.OK, {
            "license": model.license, "modelfile": "", "parameters": "", "template": "", "details": model.details,
            "model_info": {"general.architecture": "velm", "general.parameter_count": m.get("model", {}).get(
                "parameters"), "velm.vocab_size": m.get("vocab_size"), "velm.max_length": m.get("max_length"),
                "velm.input_size": self.service.captioner.size, "velm.training": m.get("training")},
            "capabilities": ["completion", "vision"], "modified_at": model.ollama()["modified_at"]})

    def openai_models(self) -> None:
        self.reply_json(HTTPStatus.OK, {"object": "list", "data": [self.service.model.openai()]})
