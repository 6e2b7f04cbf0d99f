"""The one HTTP layer of velm-edge: the kiosk page (sinks/kiosk.py) and the caption service (service/)
both stand on it.

- ``BoundedServer``: at most ``max_connections`` connections at once (each has a thread); more are
  closed at once, so idle or half-open connections cannot pile up threads and descriptors.  A
  connection must deliver its request line and headers within ``header_timeout_s`` in total (not per
  byte), so a slowloris client is cut off instead of holding a slot.
- ``GuardedHandler``: GET/HEAD/POST dispatch through ``routes``, the Host check (no DNS rebinding),
  the bearer token (``?token=`` or ``Authorization: Bearer``), and replies as text or JSON.
- ``EventBoard``: the newest event and a count, for long polls and server-sent events.

Imports only ``velm_edge.errors``; every room may use it.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from velm_edge.errors import OptionError


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(what: str, host: str, port: int, token: str | None) -> None:
    """OptionError unless the port is valid and a non-loopback bind has a token."""
    if not 0 <= port <= 65535:
        raise OptionError(f"{what}: port must be 0-65535, got {port}")
    if not is_loopback(host) and not token:
        raise OptionError(f"{what} on {host}: binding a non-loopback address needs a token, e.g. "
                          f"token={secrets.token_urlsafe(12)}")


class BoundedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, max_connections: int, header_timeout_s: float = 5.0):
        self._slots = threading.BoundedSemaphore(max_connections)
        self.header_timeout_s = header_timeout_s
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
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):  # a client leaving is no error
            super().handle_error(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class GuardedHandler(BaseHTTPRequestHandler):
    """Subclasses set ``routes`` ({(method, path): method name}), ``bind_host`` and ``token``."""

    protocol_version = "HTTP/1.1"
    timeout = 5.0  # seconds per socket read: a silent connection is dropped
    bind_host = "127.0.0.1"
    token: str | None = None
    routes: dict[tuple[str, str], str] = {}
    json_errors = False  # errors as {"error": ...} (the API) instead of plain text (the kiosk page)
    methods = ("GET", "HEAD", "POST")  # any other method is answered 501 Not Implemented

    def log_message(self, *args) -> None:  # quiet: the pipeline's own output is what matters
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body leave in separate writes: without this, Nagle's algorithm holds the body until the
        # client's delayed ACK (40 ms on Linux) for every answer on a keep-alive connection
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- a deadline for each request line and its headers, whatever the pace of the bytes
    def handle_one_request(self) -> None:
        self._deadline = threading.Timer(self.server.header_timeout_s, self._cut)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def parse_request(self) -> bool:
        self._deadline.cancel()  # the headers are in: the routes set their own limits from here
        return super().parse_request()

    # -- replies
    def reply(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            self.send_header("Connection", "keep-alive")  # an HTTP/1.0 client that asked to keep it open
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_stream(self, kind: str) -> None:
        """Headers of an endless answer (MJPEG, server-sent events); a client that stops reading is dropped."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(10)  # never waited on forever

    def reply_json(self, status: int, value, headers: dict | None = None) -> None:
        self.reply(status, json.dumps(value).encode(), "application/json", headers)

    def refuse(self, status: HTTPStatus, why: str, headers: dict | None = None, close: bool = False) -> None:
        if close:
            self.close_connection = True
            headers = {**(headers or {}), "Connection": "close"}
        if self.json_errors:
            self.reply_json(status, {"error": why, "status": int(status)}, headers)
        else:
            self.reply(status, (why + "\n").encode(), "text/plain; charset=utf-8", headers)

    def send_error(self, code, message=None, explain=None) -> None:
        """Malformed request lines, oversized headers and unsupported methods, answered in our own format."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a garbled request line still gets a status line, not HTTP/0.9's body
        try:
            self.refuse(HTTPStatus(code), message or HTTPStatus(code).phrase, close=True)
        except OSError:
            pass

    # -- the guard
    def allowed(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        wildcard = self.bind_host in ("0.0.0.0", "::")
        if host not in (self.bind_host, "localhost", "127.0.0.1", "::1") and not (self.token and wildcard):
            self.refuse(HTTPStatus.FORBIDDEN, "unexpected Host header: name the server's address or localhost",
                        close=True)
            return False
        if self.token:
            query = parse_qs(urlsplit(self.path).query)
            scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
            given = (query.get("token") or [""])[0] or (credentials if scheme.lower() == "bearer" else "")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                self.refuse(HTTPStatus.UNAUTHORIZED, "a valid token is required (Authorization: Bearer TOKEN)",
                            {"WWW-Authenticate": "Bearer"}, close=True)
                return False
        return True

    def _dispatch(self) -> None:
        if self.command not in self.methods:
            self.refuse(HTTPStatus.NOT_IMPLEMENTED, f"{self.command} is not supported; use {', '.join(self.methods)}",
                        {"Allow": ", ".join(self.methods)}, close=True)
            return
        if not self.allowed():
            return
        route = urlsplit(self.path).path
        name = self.routes.get((self.command if self.command != "HEAD" else "GET", route))
        if name is None:
            known = sorted({m for m, p in self.routes if p == route})
            if known:
                self.refuse(HTTPStatus.METHOD_NOT_ALLOWED, f"{route} takes {', '.join(known)}",
                            {"Allow": ", ".join(known)}, close=True)
            else:
                self.refuse(HTTPStatus.NOT_FOUND, f"no such path: {route}", close=True)
            return
        getattr(self, name)()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


class EventBoard:
    """The newest event and how many there were; readers wait for one newer than they saw."""

    def __init__(self):
        self.latest = None
        self.count = 0
        self.closing = False
        self._cond = threading.Condition()

    def publish(self, event) -> None:
        with self._cond:
            self.latest, self.count = event, self.count + 1
            self._cond.notify_all()

    def close(self) -> None:
        self.closing = True
        with self._cond:
            self._cond.notify_all()

    def after(self, seen: int, timeout: float = 15.0) -> tuple[int, object] | None:
        """(count, event) once there is an event newer than ``seen``, or None after ``timeout``."""
        with self._cond:
            if self.count <= seen and not self.closing:
                self._cond.wait(timeout)
            if self.latest is None or self.count <= seen:
                return None
            return self.count, self.latest

    def stream(self, handler: GuardedHandler, to_json) -> None:
        """Server-sent events on ``handler``'s connection: the current event at once, then each new one."""
        handler.start_stream("text/event-stream")
        seen = 0
        if self.latest is not None:
            seen = self.count
            handler.wfile.write(f"data: {json.dumps(to_json(self.latest))}\n\n".encode())
        while not self.closing:
            got = self.after(seen)
            if got is None:
                handler.wfile.write(b": keep-alive\n\n")
                continue
            seen, event = got
            handler.wfile.write(f"data: {json.dumps(to_json(event))}\n\n".encode())
            handler.wfile.flush()
