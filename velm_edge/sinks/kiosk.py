"""The kiosk sink: a local web page with the live preview and the captions, for a screen or a browser.

``http://127.0.0.1:8080`` by default (``kiosk`` or ``kiosk:HOST:PORT`` as a sink):

=================  ==========================================================================
``/``              full-screen page: MJPEG preview, the caption pushed by server-sent events
``/stream.mjpg``   the preview (multipart JPEG) at the source's frame rate
``/events``        captions as server-sent events (one JSON object each)
``/latest.json``   the newest caption event
``/health``        ``{"ok": true, "captions": N, "uptime_s": ...}``
=================  ==========================================================================

Safety: binding anything but a loopback address needs a token (``kiosk:0.0.0.0:8080?token=...``),
which every request must carry (``?token=`` or ``Authorization: Bearer``).  The Host header must
name the bind address or localhost (DNS rebinding).  Only GET and HEAD.  Each client gets the
newest frame and caption when it is ready for them: a slow or stalled client never slows the
pipeline, it just skips frames, and one that stops reading is dropped after 10 s.  At most
``max_clients`` streams and 4 x ``max_clients`` connections at once; a connection that has not sent
its request within ``request_timeout_s`` is closed.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from velm_edge.errors import OptionError
from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>velm-edge</title>
<style>
html, body { margin: 0; height: 100%; background: #000; color: #fff; font-family: sans-serif; overflow: hidden; }
#preview { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; }
#caption { position: absolute; left: 0; right: 0; bottom: 0; padding: 3vh 4vw; font-size: 5vh;
           background: rgba(0, 0, 0, 0.6); text-align: center; min-height: 6vh; }
#meta { position: absolute; top: 1vh; right: 2vw; font-size: 2vh; opacity: 0.7; }
</style></head>
<body>
<img id="preview" src="stream.mjpg__TOKEN__" alt="live preview">
<div id="caption">waiting for the first caption...</div>
<div id="meta"></div>
<script>
const events = new EventSource("events__TOKEN__");
events.onmessage = (m) => {
  const e = JSON.parse(m.data);
  document.getElementById("caption").textContent = e.text;
  document.getElementById("meta").textContent = `frame ${e.frame} - ${Math.round(e.frame_age_ms)} ms`;
};
</script>
</body></html>
"""


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KioskSink(Sink):
    wants_frames = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 jpeg_quality: int = 80, max_clients: int = 16, request_timeout_s: float = 5.0):
        if not 1 <= jpeg_quality <= 100 or max_clients < 1 or not 0 <= port <= 65535:
            raise OptionError(f"kiosk: port must be 0-65535, jpeg_quality 1-100 and max_clients >= 1, got {port}, "
                              f"{jpeg_quality}, {max_clients}")
        if not _is_loopback(host) and not token:
            raise OptionError(f"kiosk on {host}: binding a non-loopback address needs a token, e.g. "
                             f"kiosk:{host}:{port}?token={secrets.token_urlsafe(12)}")
        self.host, self.port, self.token = host, port, token
        self.name, self.address = f"kiosk:{host}:{port}", f"{host}:{port}"
        self.jpeg_quality, self.max_clients, self.request_timeout_s = jpeg_quality, max_clients, request_timeout_s
        self.latest: CaptionEvent | None = None
        self.captions = 0
        self._frame: np.ndarray | None = None
        self._frame_id = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._cond = threading.Condition()
        self._clients = threading.BoundedSemaphore(max_clients)
        self._started = time.monotonic()
        self._server: ThreadingHTTPServer | None = None
        self._closing = False

    # -- the pipeline side: never blocks on clients
    def start(self) -> KioskSink:
        handler = type("Handler", (_Handler,), {"kiosk": self, "timeout": self.request_timeout_s})
        self._server = _BoundedServer((self.host, self.port), handler, max_connections=4 * self.max_clients)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]  # port 0 -> the one the OS chose
        self.address = f"{self.host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, name="kiosk http", daemon=True).start()
        return self

    def frame(self, image: np.ndarray) -> None:
        """A preview frame (BGR); called at the source's frame rate, encoded only when a client asks."""
        with self._cond:
            self._frame, self._frame_id = image, self._frame_id + 1
            self._cond.notify_all()

    def write(self, event: CaptionEvent) -> None:
        with self._cond:
            self.latest, self.captions = event, self.captions + 1
            self._cond.notify_all()

    def stop(self) -> None:
        self._closing = True
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- the client side
    def _wait_past(self, count, after: int, timeout: float) -> bool:
        """With the lock held: wait until ``count()`` passes ``after`` (or the sink closes, or time is up)."""
        if count() <= after and not self._closing:
            self._cond.wait(timeout)
        return count() > after

    def jpeg(self, after: int, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """The newest preview frame after ``after`` as JPEG (encoded once per frame, outside the lock)."""
        with self._cond:
            newer = self._wait_past(lambda: self._frame_id, after, timeout)  # wait first, then look
            if self._frame is None or not newer:
                return None
            if self._jpeg is not None and self._jpeg[0] == self._frame_id:
                return self._jpeg
            frame, frame_id = self._frame, self._frame_id
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        encoded = (frame_id, buf.tobytes() if ok else b"")
        with self._cond:
            self._jpeg = encoded
        return encoded

    def caption_after(self, after: int, timeout: float = 15.0) -> tuple[int, CaptionEvent] | None:
        with self._cond:
            newer = self._wait_past(lambda: self.captions, after, timeout)
            if self.latest is None or not newer:
                return None
            return self.captions, self.latest


class _BoundedServer(ThreadingHTTPServer):
    """At most ``max_connections`` connections at once (each has a thread); more are closed at once, so
    idle or half-open connections cannot pile up threads and descriptors."""

    def __init__(self, address, handler, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client leaving is no error
            super().handle_error(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    kiosk: KioskSink
    protocol_version = "HTTP/1.1"
    timeout = 5.0  # seconds to send a request (KioskSink's request_timeout_s): a silent connection is dropped

    def log_message(self, *args) -> None:  # quiet: the pipeline's own output is what matters
        pass

    def _refuse(self, status: HTTPStatus, why: str) -> None:
        body = (why + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _allowed(self) -> bool:
        k = self.kiosk
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if host not in (k.host, "localhost", "127.0.0.1", "::1") and not (k.token and k.host in ("0.0.0.0", "::")):
            self._refuse(HTTPStatus.FORBIDDEN, "unexpected Host header")
            return False
        if k.token:
            query = parse_qs(urlsplit(self.path).query)
            scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
            given = (query.get("token") or [""])[0] or (credentials if scheme.lower() == "bearer" else "")
            if not secrets.compare_digest(given, k.token):
                self._refuse(HTTPStatus.UNAUTHORIZED, "a valid token is required")
                return False
        return True

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._allowed():
            return
        route = urlsplit(self.path).path
        if route in ("/", "/index.html"):
            suffix = f"?token={self.kiosk.token}" if self.kiosk.token else ""
            self._send(PAGE.replace("__TOKEN__", suffix).encode(), "text/html; charset=utf-8")
        elif route == "/latest.json":
            latest = self.kiosk.latest
            self._send(json.dumps(latest and latest.to_json()).encode(), "application/json")
        elif route == "/health":
            k = self.kiosk
            body = {"ok": True, "captions": k.captions, "uptime_s": round(time.monotonic() - k._started, 1)}
            self._send(json.dumps(body).encode(), "application/json")
        elif route in ("/stream.mjpg", "/events"):
            if not self.kiosk._clients.acquire(blocking=False):
                self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many clients")
                return
            try:
                (self._mjpeg if route == "/stream.mjpg" else self._events)()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the client left
            finally:
                self.kiosk._clients.release()
        else:
            self._refuse(HTTPStatus.NOT_FOUND, "not found")

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream_headers(self, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(10)  # a client that stops reading is dropped, never waited on forever

    def _mjpeg(self) -> None:
        self._stream_headers("multipart/x-mixed-replace; boundary=frame")
        seen = 0
        while not self.kiosk._closing:
            got = self.kiosk.jpeg(seen)
            if got is None:
                continue
            seen, data = got
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode()
                             + b"\r\n\r\n" + data + b"\r\n")

    def _events(self) -> None:
        self._stream_headers("text/event-stream")
        seen = 0
        latest = self.kiosk.latest
        if latest is not None:  # a new page shows the current caption at once
            seen = self.kiosk.captions
            self.wfile.write(f"data: {json.dumps(latest.to_json())}\n\n".encode())
        while not self.kiosk._closing:
            got = self.kiosk.caption_after(seen)
            if got is None:
                self.wfile.write(b": keep-alive\n\n")
                continue
            seen, event = got
            self.wfile.write(f"data: {json.dumps(event.to_json())}\n\n".encode())
            self.wfile.flush()
