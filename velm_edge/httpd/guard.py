"""``GuardedHandler``: what every request passes before its route (framing, Host, Origin, token) and how
answers leave; and the checks of a bind address (see the package's docstring)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from velm_edge.errors import OptionError, cut, quoted
from velm_edge.httpd.connections import RequestReader

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(host: str, port: int) -> str:
    """``http://HOST:PORT``, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_bind(what: str, host: str, port: int, token: str | None) -> None:
    """OptionError unless the port is valid and a non-loopback bind has a token."""
    if not 0 <= port <= 65535:
        raise OptionError(f"{what}: port must be 0-65535, got {port}")
    if not is_loopback(host) and not token:
        raise OptionError(f"{what} on {host}: binding a non-loopback address needs a token, e.g. "
                          f"token={secrets.token_urlsafe(12)}")


class GuardedHandler(BaseHTTPRequestHandler):
    """Subclasses set ``routes`` ({(method, path): method name}), ``bind_host`` and ``token``."""

    protocol_version = "HTTP/1.1"
    timeout = 5.0  # seconds per socket read: a silent connection is dropped
    bind_host = "127.0.0.1"
    token: str | None = None
    routes: dict[tuple[str, str], str] = {}
    json_errors = False  # errors as {"error": ...} (the API) instead of plain text (the kiosk page)
    methods = ("GET", "HEAD", "POST")  # any other method is answered 501 Not Implemented
    allow_origins: tuple[str, ...] = ()  # web pages (scheme://host:port) besides the server's own that may call it

    def log_message(self, *args) -> None:  # quiet: the pipeline's own output is what matters
        pass

    def __init__(self, request, client_address, server, head: bytes = b""):
        self._head, self.parked, self._expects_continue = head, False, False
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = RequestReader(self._head, self.connection)  # the header reader's bytes come first
        # headers and body leave in separate writes: without this, Nagle's algorithm holds the body until the
        # client's delayed ACK (40 ms on Linux) for every answer on a keep-alive connection
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        """One request; a keep-alive connection then goes back to the server's header reader."""
        self.close_connection = True
        self.handle_one_request()
        if not self.close_connection:
            self.wfile.flush()
            self.parked = self.server.park(self.connection, self.client_address, self.rfile.leftover())

    def version_string(self) -> str:
        return "velm-edge"  # no versions of Python or of the server for a prober to match

    # -- a deadline for each request line and its headers, whatever the pace of the bytes
    def handle_one_request(self) -> None:
        """The header reader hands over whole heads; only for what it passed on early (garbage, HTTP/0.9,
        oversized) does the parser read the socket, and then within the same total deadline."""
        self._deadline = None if self.rfile.holds_head() else threading.Timer(self.server.header_timeout_s, self._cut)
        if self._deadline is not None:
            self._deadline.daemon = True
            self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            if self._deadline is not None:
                self._deadline.cancel()

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:
            if self._deadline is not None:
                self._deadline.cancel()  # line and headers are in: the routes set their own limits from here

    def handle_expect_100(self) -> bool:
        self._expects_continue = True  # "100 Continue" only once Host, token and size are checked (continue_body)
        return True

    def continue_body(self) -> None:
        """Tell a client that sent ``Expect: 100-continue`` to send its body: call after every check."""
        if self._expects_continue:
            self._expects_continue = False
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()

    # -- replies
    def reply(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._cors()
        if self.server.stopping and not self.close_connection:
            self.close_connection = True
            self.send_header("Connection", "close")
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            self.send_header("Connection", "keep-alive")  # an HTTP/1.0 client that asked to keep it open
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_stream(self, kind: str) -> bool:
        """Headers of an endless answer (MJPEG, server-sent events); a client that stops reading is dropped.
        False for HEAD: the headers are the whole answer."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self._cors()
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(10)  # never waited on forever
        return self.command != "HEAD"

    def stream_in_slot(self, slots: threading.BoundedSemaphore, busy: str, stream,
                       headers: dict | None = None) -> None:
        """Run ``stream()`` (an endless answer) holding one of ``slots``; 503 ``busy`` when none is free.  A client
        that leaves ends the stream (``_dispatch`` takes its ConnectionError or TimeoutError)."""
        if not slots.acquire(blocking=False):
            self.refuse(HTTPStatus.SERVICE_UNAVAILABLE, busy, headers, close=True)
            return
        try:
            stream()
        finally:
            slots.release()

    def reply_json(self, status: int, value, headers: dict | None = None) -> None:
        self.reply(status, json.dumps(value).encode(), "application/json", headers)

    def error_body(self, status: HTTPStatus, why: str, param: str | None = None) -> dict:
        """The JSON of an error (``json_errors``); a server whose routes speak other protocols overrides it."""
        return {"error": why, "status": int(status)}

    def refuse(self, status: HTTPStatus, why: str, headers: dict | None = None, close: bool = False,
               param: str | None = None) -> None:
        """An error answer; ``param`` names the request field at fault, for protocols whose errors carry it."""
        if close:
            self.close_connection = True
            headers = {**(headers or {}), "Connection": "close"}
        if self.json_errors:
            self.reply_json(status, self.error_body(status, why, param), headers)
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
    def _host(self) -> str | None:
        """The one Host header's name, lower case (brackets of an IPv6 address removed); None if malformed."""
        values = self.headers.get_all("Host") or []
        return host_name(values[0]) if len(values) == 1 else None

    def _own(self, host: str | None) -> bool:
        wildcard = self.bind_host in ("0.0.0.0", "::")
        return host is not None and (host in (self.bind_host.lower(), "localhost", "127.0.0.1", "::1")
                                     or bool(self.token and wildcard))

    def _origin_allowed(self, origin: str) -> bool:
        """The page's own origin (http:// and the Host it calls, as a same-origin request has it) or one named
        in ``allow_origins``; anything else, ``null`` included, is a foreign page."""
        if self._listed(origin):
            return True
        return origin.lower() in (f"http://{self.headers.get('Host', '').strip().lower()}",
                                  f"https://{self.headers.get('Host', '').strip().lower()}")

    def _listed(self, origin: str) -> bool:
        """Named in ``allow_origins`` (or ``*`` is): the only origins that get CORS headers."""
        return origin in self.allow_origins or "*" in self.allow_origins

    def _cors(self) -> None:
        origin = self.headers.get("Origin") if getattr(self, "headers", None) is not None else None
        if origin and self._listed(origin):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def allowed(self) -> bool:
        if not self._own(self._host()):
            self.refuse(HTTPStatus.FORBIDDEN, "unexpected Host header: name the server's address or localhost "
                        "(one Host header)", close=True)
            return False
        origin = self.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            self.refuse(HTTPStatus.FORBIDDEN, f"requests from the web page at {quoted(origin)} are not allowed; "
                        "start the server with --allow-origin for it", close=True)
            return False
        if self.token:
            query = parse_qs(urlsplit(self.path).query)
            scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
            given = (query.get("token") or [""])[0].encode()
            if not given and scheme.lower() == "bearer":  # header bytes arrive as Latin-1: back to the raw bytes
                given = credentials.strip().encode("latin-1", "replace")
            if not secrets.compare_digest(given, self.token.encode()):
                self.refuse(HTTPStatus.UNAUTHORIZED, "a valid token is required (Authorization: Bearer TOKEN)",
                            {"WWW-Authenticate": "Bearer"}, close=True)
                return False
        return True

    def framing_error(self) -> str | None:
        """Why the message's framing cannot be trusted (h11's rules), or None."""
        if self.headers.defects or self.headers.get_payload():  # the stdlib parser stops at a line it cannot
            # read ("Content-Length : 5") and keeps the rest as a payload: RFC 9112 5.1 asks for 400, never to ignore
            return "a malformed header line (no whitespace is allowed between a header's name and its colon)"
        for name, value in self.headers.items():
            if "\0" in value:
                return f"a NUL byte in the {cut(name)} header"
        lengths = self.headers.get_all("Content-Length") or []
        if len({v.strip() for v in lengths}) > 1:
            return "conflicting Content-Length headers"
        if self.command in ("GET", "HEAD", "OPTIONS") and (self.headers.get("Transfer-Encoding")
                                                           or any(v.strip() not in ("", "0") for v in lengths)):
            return f"a {self.command} request has no body"
        target = self.path
        if not target.startswith("/"):
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not self._own(host_name(parts.netloc)):
                return "the request target must be a path (or this server's own absolute URL)"
            self.path = parts.path + (f"?{parts.query}" if parts.query else "") or "/"
        return None

    def _dispatch(self) -> None:
        if self.server.grace_over:
            self.refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the server is stopping", close=True)
            return
        why = self.framing_error()  # first: a preflight's body, too, must never be read as a second request
        if why:
            self.refuse(HTTPStatus.BAD_REQUEST, why, close=True)
            return
        if self.command == "OPTIONS" and self.headers.get("Origin") and self.headers.get(
                "Access-Control-Request-Method"):
            self._preflight()
            return
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
        try:
            getattr(self, name)()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client left
        except Exception:  # a bug: the client still gets an answer, the log the traceback
            log.exception("%s %s failed", self.command, route)
            self.close_connection = True
            if not self._answered:
                self.refuse(HTTPStatus.INTERNAL_SERVER_ERROR, "an internal error: see the server's log", close=True)

    def _preflight(self) -> None:
        """A browser's CORS preflight: answered for allowed origins, 403 for others (as Ollama does)."""
        if not self._own(self._host()) or not self._listed(self.headers["Origin"]):
            self.refuse(HTTPStatus.FORBIDDEN, "this origin is not allowed (--allow-origin)", close=True)
            return
        methods = ", ".join(m for m in self.methods if m != "HEAD")
        self.reply(HTTPStatus.NO_CONTENT, b"", "text/plain", {
            "Access-Control-Allow-Methods": methods, "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600"})

    def send_response(self, code, message=None) -> None:
        self._answered = True
        super().send_response(code, message)

    _answered = False
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


def host_name(authority: str) -> str | None:
    """The host of ``NAME[:PORT]`` or ``[IPv6][:PORT]``, lower case; None unless it is exactly that."""
    m = _AUTHORITY.fullmatch(authority.strip())
    if m is None:
        return None
    return (m.group(1) or m.group(2)).lower()


_AUTHORITY = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?))(?::[0-9]{1,5})?")
