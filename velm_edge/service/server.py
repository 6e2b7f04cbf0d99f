"""``CaptionService``: captions over local HTTP for programs in any language (``velm-edge serve``).

=========================  ===========================================================================
``POST /v1/caption``       an image body (JPEG, PNG or BMP) -> the caption as JSON; decoding options in
                           the query (``?beam_size=3&max_length=12``)
``GET /v1/info``           the bundle, the runtime and the limits
``GET /v1/latest``         the newest caption of the live source (``velm-edge serve SOURCE``)
``GET /v1/events``         the live captions as server-sent events
``GET /v1/openapi.json``   this API, described as OpenAPI 3
``GET /health``            ``{"ok": true, ...}``
=========================  ===========================================================================

Safe by default, on the same HTTP layer as the kiosk (``velm_edge.httpd``): loopback only unless a
token is given, the Host header checked, web pages of other origins refused (403), a body limit (413
before reading), pixel and decoded-byte limits read from the image header before decoding (413), a
per-request time limit (408 for a slow upload, 504 for a slow caption), a bounded queue (503 with
``Retry-After`` when full), a cap on event streams, and a graceful stop (every request read is
answered).  Every error is JSON: ``{"error": "what to fix", "status": N}``.

Requests are captioned by a fixed pool of threads, each with its own interpreters (``Captioner`` keeps
them per thread), so concurrent clients share the cores without building interpreters per request.  With a
live ``source`` the service also captions it on a thread of its own, onto the board that ``/v1/latest`` and
``/v1/events`` read.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http import HTTPStatus

from velm_edge import __version__
from velm_edge.errors import FrameError, OptionError, quoted
from velm_edge.httpd import BoundedServer, EventBoard, GuardedHandler, check_bind, http_url
from velm_edge.live import pipeline
from velm_edge.live.sources import Source
from velm_edge.runtime.captioner import Caption, Captioner
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.detect import DetectOptions
from velm_edge.runtime.image_file import decode_image
from velm_edge.service import compat, images
from velm_edge.service.openapi import describe
from velm_edge.service.protocols import OLLAMA_ROUTES, OPENAI_ROUTES, ProtocolRoutes
from velm_edge.service.refusal import Busy, Refusal
from velm_edge.specs import Key, parse_query

DECODE_KEYS = Key.fields_of(DecodeOptions)  # a request's ?beam_size=... and the rest: DecodeOptions' own fields
DETECT_KEYS = Key.fields_of(DetectOptions)  # ?min_score=0.5&classes=person,car: DetectOptions' own fields


@dataclass(frozen=True)
class ServiceOptions:
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to bind; anything but loopback needs --token"})
    port: int = field(default=8090, metadata={"help": "TCP port (0: any free port)"})
    token: str | None = field(default=None, metadata={
        "help": "bearer token every request must carry (Authorization: Bearer TOKEN or ?token=)"})
    workers: int = field(default=os.cpu_count() or 2, metadata={
        "help": "captioning threads, each with its own interpreters (default: the number of cores)"})
    max_body_bytes: int = field(default=10_000_000, metadata={
        "help": "largest request body in bytes (413 above): an image upload, or a JSON request whose base64 images "
                "take 4/3 of their size (about 7.5 MB of image at the default)"})
    max_pixels: int = field(default=40_000_000, metadata={
        "help": "largest image in pixels, read from its header before decoding (413 above)"})
    max_decoded_bytes: int = field(default=120_000_000, metadata={
        "help": "largest decoded image in bytes (width x height x channels x bytes per sample, read from its "
                "header; 413 above): 40 Mpx of 8-bit RGB, or 15 Mpx of 16-bit RGBA"})
    timeout_s: float = field(default=10.0, metadata={
        "help": "time limit of one request: upload (408) and caption (504)"})
    max_queue: int = field(default=16, metadata={
        "help": "requests that may wait for a captioning thread; more get 503 with Retry-After"})
    max_connections: int = field(default=64, metadata={
        "help": "requests handled at once (a thread each); idle and slow connections wait without a thread"})
    max_streams: int = field(default=16, metadata={
        "help": "/v1/events subscribers at once; more get 503 (the rest of the API stays available)"})
    allow_origin: tuple[str, ...] = field(default=(), metadata={
        "help": "a web page origin (scheme://host:port) besides the service's own that may call the API (CORS); "
                "repeat for more, * for any.  Requests from any other page get 403"})

    def __post_init__(self) -> None:
        check_bind("serve", self.host, self.port, self.token)
        if min(self.workers, self.max_body_bytes, self.max_pixels, self.max_decoded_bytes, self.max_connections,
               self.max_streams) < 1 or self.max_queue < 0 or not 0 < self.timeout_s < float("inf"):
            raise OptionError(f"serve: workers, max_body_bytes, max_pixels, max_decoded_bytes, max_connections and "
                              f"max_streams must be >= 1, max_queue >= 0 and timeout_s > 0; got {self}")


class CaptionService:
    def __init__(self, captioner: Captioner, options: ServiceOptions | None = None, source: Source | None = None,
                 source_name: str | None = None):
        """``source``: a live source to caption the whole time the service runs (``source_name``: how the user
        named it, for /v1/info; default its URI)."""
        self.captioner, self.options = captioner, options or ServiceOptions()
        self.source = source
        self.live = EventBoard() if source is not None else None
        self.live_source = (source_name or source.uri) if source is not None else None
        self._stopping = threading.Event()
        self._follower: threading.Thread | None = None
        self.served = 0
        self.started = time.monotonic()
        self._pending = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="caption")
        self.streams = threading.BoundedSemaphore(self.options.max_streams)
        self._server: BoundedServer | None = None
        self.port = self.options.port
        self.model = compat.Model.of(captioner.bundle)  # the bundle as the Ollama and OpenAI routes name it

    # -- lifecycle
    def start(self) -> CaptionService:
        o = self.options
        handler = type("Handler", (ServiceHandler,), {"service": self, "bind_host": o.host, "token": o.token,
                                                "timeout": o.timeout_s, "allow_origins": tuple(o.allow_origin)})
        self._server = BoundedServer((o.host, o.port), handler, o.max_connections, min(5.0, o.timeout_s))
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="serve http", daemon=True).start()
        if self.source is not None:
            self._follower = threading.Thread(target=self._follow, name="serve live", daemon=True)
            self._follower.start()
        return self

    def _follow(self) -> None:
        """The live source's captions, onto the board that /v1/latest and /v1/events read."""
        for event in pipeline.captions(self.source, self.captioner, stop=self._stopping.is_set):
            self.live.publish(event)

    def stop(self) -> bool:
        """Stop accepting, answer every request already read (its caption, or 503 once ``timeout_s`` of grace
        is over), then stop the captioning threads.  True when every request was answered within the grace."""
        self._stopping.set()
        if self.live is not None:
            self.live.close()
        answered = True
        if self._server is not None:
            self._server.shutdown()
            answered = self._server.drain(self.options.timeout_s + 1.0)
            self._server.server_close()
            self._server = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._follower is not None:
            self._follower.join(5)
        return answered

    def __enter__(self) -> CaptionService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return http_url(self.options.host, self.port)

    @property
    def pending(self) -> int:
        return self._pending

    # -- captioning
    def caption_image_bytes(self, data: bytes, options: DecodeOptions,
                            detection: DetectOptions | None = None) -> Caption:
        """What a captioning thread runs for a request: decode the image (the one image reader: EXIF orientation
        applied) and caption it."""
        return self.captioner.caption(decode_image(data), options, detection=detection)

    def inspect(self, data: bytes) -> tuple[str, int, int]:
        """(type, width, height) of an encoded image, read from its bytes before anything is decoded; Refusal
        (415, 400 or 413) for a type that is not JPEG, PNG or BMP, a damaged or truncated file, or one over the
        pixel or decoded-byte limits."""
        o = self.options
        try:
            kind = images.sniff(data)
        except FrameError as e:
            raise Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(e)) from None
        try:
            width, height, decoded = images.header(data, kind)
            if width * height <= o.max_pixels and decoded <= o.max_decoded_bytes:
                images.check_intact(data, kind)
        except FrameError as e:
            raise Refusal(HTTPStatus.BAD_REQUEST, str(e)) from None
        if width * height > o.max_pixels:
            raise Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the image is {width} x {height} pixels; at most "
                          f"{o.max_pixels} pixels are accepted (--max-pixels)")
        if decoded > o.max_decoded_bytes:
            raise Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the image is {width} x {height} pixels and decodes "
                          f"to {decoded} bytes; at most {o.max_decoded_bytes} are accepted (--max-decoded-bytes)")
        return kind, width, height

    def caption(self, data: bytes, options: DecodeOptions, detection: DetectOptions | None = None) -> Caption:
        """Caption an encoded image on the pool (check it with ``inspect`` first).  Refusal: Busy (503) when
        the queue is full, 504 after ``timeout_s``, 400 when the decoder cannot read the image."""
        o = self.options
        with self._lock:
            if self._pending >= o.workers + o.max_queue:
                raise Busy
            self._pending += 1
        try:
            future = self._pool.submit(self.caption_image_bytes, data, options, detection)
        except RuntimeError:  # the pool is shut down: the service is stopping
            with self._lock:
                self._pending -= 1
            raise Busy from None

        def done(_):
            with self._lock:
                self._pending -= 1

        future.add_done_callback(done)
        try:
            caption = future.result(timeout=o.timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: it never runs, and its place in the queue is free again
            raise Refusal(HTTPStatus.GATEWAY_TIMEOUT, f"the caption took longer than {o.timeout_s:g} s") from None
        except FrameError as e:
            raise Refusal(HTTPStatus.BAD_REQUEST, str(e)) from None
        with self._lock:
            self.served += 1
        return caption

    def info(self) -> dict:
        m = self.captioner.bundle.manifest
        o = self.options
        return {"version": __version__, "bundle": {"name": m.get("name"), "precision": m["precision"],
                                                   "input_size": self.captioner.size, "vocab_size": m["vocab_size"],
                                                   "training": m.get("training")},
                "decoding": {"strategy": self.captioner.options.strategy, **dataclasses.asdict(self.captioner.options)},
                "detection": None if "detector" not in m else {
                    "model": m["detector"].get("model"), "labels": list(m["detector"]["labels"]),
                    **dataclasses.asdict(self.captioner.detection)},
                "runtime": self.captioner.info,
                "workers": o.workers, "live_source": self.live_source,
                "limits": {"max_body_bytes": o.max_body_bytes, "max_pixels": o.max_pixels,
                           "max_decoded_bytes": o.max_decoded_bytes, "timeout_s": o.timeout_s, "max_queue": o.max_queue,
                           "max_connections": o.max_connections, "max_streams": o.max_streams}}


class ServiceHandler(ProtocolRoutes, GuardedHandler):
    service: CaptionService
    json_errors = True
    routes = {("POST", "/v1/caption"): "native_caption", ("GET", "/v1/info"): "native_info",
              ("GET", "/v1/latest"): "native_latest", ("GET", "/v1/events"): "native_events",
              ("GET", "/v1/openapi.json"): "native_openapi", ("GET", "/health"): "native_health",
              **OLLAMA_ROUTES, **OPENAI_ROUTES}  # each route's method: native_* here, the others in ProtocolRoutes

    def _body(self, what: str = "the image bytes (JPEG, PNG or BMP)") -> bytearray | None:
        """The request body within the limits, or None after refusing it."""
        o = self.service.options
        if self.headers.get("Transfer-Encoding"):
            self.refuse(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length (no chunked uploads)",
                        close=True)
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            self.refuse(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required", close=True)
            return None
        text = text.strip()
        if not text.isascii() or not text.isdigit():
            self.refuse(HTTPStatus.BAD_REQUEST, f"Content-Length must be a whole number, got {quoted(text, 40)}",
                        close=True)
            return None
        length = int(text) if len(text) <= 18 else o.max_body_bytes + 1  # no 5,000-digit int() (ValueError)
        if length > o.max_body_bytes:
            self.refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body has {length} bytes; at most "
                        f"{o.max_body_bytes} are accepted (--max-body-bytes)", close=True)
            return None
        if length == 0:
            self.refuse(HTTPStatus.BAD_REQUEST, f"the body is empty: send {what}")
            return None
        self.continue_body()  # Expect: 100-continue is answered only now, after Host, token and size
        deadline, body, got = time.monotonic() + o.timeout_s, bytearray(length), 0
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                self.refuse(HTTPStatus.REQUEST_TIMEOUT, f"the upload took longer than {o.timeout_s:g} s", close=True)
                return None
            self.connection.settimeout(left)
            try:
                chunk = self.rfile.read1(min(65536, length - got))
            except TimeoutError:
                chunk = None
            if not chunk:
                if chunk is None:
                    continue  # the deadline check above answers
                self.close_connection = True  # the client hung up mid-body
                return None
            body[got:got + len(chunk)] = chunk
            got += len(chunk)
        self.connection.settimeout(self.timeout)
        return body

    def native_caption(self) -> None:
        data = self._body()
        if data is None:
            return
        try:
            given = parse_query("POST /v1/caption", self.path.partition("?")[2],
                                (*DECODE_KEYS, *DETECT_KEYS, Key("token", str, "the bearer token, if not in a header")))
            given.pop("token", None)
            detect = {k.name: given.pop(k.name) for k in DETECT_KEYS if k.name in given}
            options = self.service.captioner.options.override(**given)  # DecodeOptions checks every bound
            detection = self.service.captioner.detection.override(**detect)  # and DetectOptions its own
            kind, width, height = self.service.inspect(data)
            caption = self.service.caption(data, options, detection)
        except OptionError as e:
            self.refuse(HTTPStatus.BAD_REQUEST, str(e))
            return
        except Refusal as e:
            self.refuse(e.status, str(e), e.headers)
            return
        self.reply_json(HTTPStatus.OK, {**caption.to_json(), "image": {"type": kind, "width": width,
                                                                       "height": height}})

    def native_info(self) -> None:
        self.reply_json(HTTPStatus.OK, self.service.info())

    def native_health(self) -> None:
        s = self.service
        self.reply_json(HTTPStatus.OK, {"ok": True, "uptime_s": round(time.monotonic() - s.started, 1),
                                        "captions": s.served, "pending": s.pending, "workers": s.options.workers})

    def native_openapi(self) -> None:
        self.reply_json(HTTPStatus.OK, describe(self.routes, (*DECODE_KEYS, *DETECT_KEYS)))

    def _live(self) -> EventBoard | None:
        if self.service.live is None:
            self.refuse(HTTPStatus.NOT_FOUND, "no live source: start the service with one, e.g. "
                                              "velm-edge serve /dev/video0")
        return self.service.live

    def native_latest(self) -> None:
        board = self._live()
        if board is not None:
            self.reply_json(HTTPStatus.OK, board.latest and board.latest.to_json())

    def native_events(self) -> None:
        board = self._live()
        if board is None:
            return
        busy = (f"{self.service.options.max_streams} event streams are open already (--max-streams); poll /v1/latest "
                "or retry later")
        self.stream_in_slot(self.service.streams, busy, lambda: board.stream(self, lambda e: e.to_json()),
                            {"Retry-After": "5"})
