"""The one HTTP layer of velm-edge: the kiosk page (sinks/kiosk.py) and the caption service (service/)
both stand on it.

- ``BoundedServer``: one selector thread reads every connection's request line and headers (a waiting
  connection costs a socket, not a thread; ``header_timeout_s`` in total, idle keep-alive included, so
  slow, silent and idle clients are cut off and the oldest make room for new ones); whole requests go
  to at most ``max_connections`` handler threads; ``shutdown`` + ``drain`` answer what was read, then stop.
- ``GuardedHandler``: GET/HEAD/POST dispatch through ``routes``; HTTP/1.1 framing checked as h11 does
  (one Content-Length, no body on GET/HEAD, origin-form targets); the Host check (one Host header, no DNS
  rebinding), the Origin check (a foreign web page gets 403; CORS only for ``allow_origins``), the
  bearer token (``?token=`` or ``Authorization: Bearer``), and replies as text or JSON; a route that
  fails still answers 500.
- ``EventBoard``: the newest event and a count, for long polls and server-sent events.

Imports only ``velm_edge.errors``; every room may use it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import re
import secrets
import selectors
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from velm_edge.errors import OptionError

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


class _Reader:
    """The handler's ``rfile``: the bytes the header reader already took off the socket, then the socket."""

    def __init__(self, head: bytes, sock: socket.socket):
        self._buf, self._sock, self.closed = bytearray(head), sock, False

    def _fill(self, n: int = 65536) -> bool:
        data = self._sock.recv(n)
        self._buf += data
        return bool(data)

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            if not self._fill():
                return self._take(len(self._buf))

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._fill():
            pass
        return self._take(len(self._buf) if n < 0 else min(n, len(self._buf)))

    def read1(self, n: int = 65536) -> bytes:
        if not self._buf:
            return self._sock.recv(n)
        return self._take(min(n, len(self._buf)))

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def holds_head(self) -> bool:
        return self._buf.find(b"\n\r\n") >= 0 or self._buf.find(b"\n\n") >= 0

    def leftover(self) -> bytes:
        """What was read past the request (a pipelined next one), for the header reader."""
        return self._take(len(self._buf))

    def close(self) -> None:
        self.closed = True


def head_complete(buf: bytes | bytearray) -> bool:
    """True when ``buf`` holds a whole request line and headers, or something the parser must answer now
    (a request line that is not ``METHOD TARGET HTTP/x.y``, or more than the parser takes)."""
    if len(buf) > MAX_HEAD_BYTES:
        return True
    end = buf.find(b"\n")
    if end < 0:
        return False
    if not buf[:end].rstrip().split(b" ")[-1].startswith(b"HTTP/"):
        return True  # garbage or HTTP/0.9: the parser answers it without headers
    return buf.find(b"\n\r\n", end) >= 0 or buf.find(b"\n\n", end) >= 0


MAX_HEAD_BYTES = 65537  # more and the parser goes on from the socket (in a thread, within the same deadline): a
# waiting connection holds at most this plus one read of buffer, so the waiting ones cannot swell the process


class _Waiting:
    """A connection between requests: not yet a whole request line and headers."""
    __slots__ = ("sock", "address", "buf", "deadline", "fresh")

    def __init__(self, sock: socket.socket, address, buf: bytes, deadline: float, fresh: bool = True):
        self.sock, self.address, self.buf, self.deadline = sock, address, bytearray(buf), deadline
        self.fresh = fresh  # no request answered on it yet (else: a keep-alive connection between requests)


class BoundedServer(HTTPServer):
    """One thread (``serve_forever``) accepts connections and reads every request line and its headers
    with a selector, so a connection costs a socket, not a thread, until its request is whole; only then
    does a handler thread (at most ``max_connections`` of them) take it.  A connection gets
    ``header_timeout_s`` in total for its request line and headers, idle keep-alive time included; at
    most ``max_waiting`` wait at once, and the oldest is closed to make room for a new one.  After an
    answer a keep-alive connection goes back to the selector, so idle clients never hold a thread.
    ``shutdown`` stops accepting and closes connections without a request; ``drain`` then lets the
    handlers answer every request already read (``stopping`` tells them to close afterwards)."""

    idle_thread_s = 1.0  # a handler thread with nothing to do for this long ends (a burst's threads do not stay)
    request_queue_size = 128  # the listen backlog: socketserver's 5 makes a burst of clients wait on SYN retries
    allow_reuse_address = True

    def __init__(self, address, handler, max_connections: int, header_timeout_s: float = 5.0,
                 max_waiting: int | None = None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.max_connections, self.header_timeout_s = max_connections, header_timeout_s
        self.max_waiting = max_waiting or max(256, 8 * max_connections)
        self.stopping = self.grace_over = False  # stop() called; its grace for answering is over (then: 503)
        self._waiting: dict[int, _Waiting] = {}  # by file number, oldest first
        self._parked: list[_Waiting] = []  # handed back by handler threads, for the selector to take
        self._ready: queue.SimpleQueue = queue.SimpleQueue()  # whole requests for the handler threads
        self._lock = threading.Lock()
        self._threads = self._busy = self._idle = self._queued = 0  # threads, of them busy and idle; requests queued
        self._loop_done = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__(address, handler)

    # -- the selector thread
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.socket.setblocking(False)
        self._wake_r.setblocking(False)
        with selectors.DefaultSelector() as sel:
            self._sel = sel
            sel.register(self.socket, selectors.EVENT_READ, "accept")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            try:
                while not self.stopping:
                    now = time.monotonic()
                    nearest = min((w.deadline for w in self._waiting.values()), default=now + poll_interval)
                    for key, _ in sel.select(max(0.0, min(nearest - now, poll_interval))):
                        if key.data == "accept":
                            self._accept()
                        elif key.data == "wake":
                            self._take_parked()
                        else:
                            self._read(key.data)
                    self._expire()
                self._accept()  # the backlog: connections the kernel took before the stop are served too
                self._take_parked()
                self._finish_waiting(sel)
            finally:
                for w in list(self._waiting.values()):
                    self._close(w)
                self._loop_done.set()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors: the oldest waiting connection gives its own up
                if not self._waiting:
                    time.sleep(0.05)  # all held by handlers: do not spin on a listening socket that stays readable
                    return
                self._close(next(iter(self._waiting.values())))
                continue
            if len(self._waiting) >= self.max_waiting:
                self._close(next(iter(self._waiting.values())))  # the oldest waiting connection makes room
            sock.setblocking(False)
            self._wait(_Waiting(sock, address, b"", time.monotonic() + self.header_timeout_s))

    def _wait(self, w: _Waiting) -> None:
        self._waiting[w.sock.fileno()] = w
        self._sel.register(w.sock, selectors.EVENT_READ, w)

    def _take_parked(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            parked, self._parked = self._parked, []
        for w in parked:
            if self.stopping and not w.buf:
                self._close(w, waiting=False)
            else:
                self._wait(w)

    def _read(self, w: _Waiting) -> None:
        try:
            data = w.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(w)  # the client left (or reset) before a whole request
            return
        w.buf += data
        if head_complete(w.buf):
            self._waiting.pop(w.sock.fileno())
            self._sel.unregister(w.sock)
            self._dispatch(w)

    def _expire(self) -> None:
        now = time.monotonic()
        for w in [w for w in self._waiting.values() if w.deadline <= now]:
            self._close(w)  # no whole request within header_timeout_s: slow, idle or gone

    def _finish_waiting(self, sel) -> None:
        """At a stop: what already arrived is read; connections with a request under way, and new ones, get
        until their deadline (1 s at most) to send it whole; idle keep-alive connections are closed at once."""
        for w in list(self._waiting.values()):
            self._read(w)
        for w in [w for w in self._waiting.values() if not w.buf and not w.fresh]:
            self._close(w)
        end = time.monotonic() + 1.0
        while self._waiting and time.monotonic() < end:
            for key, _ in sel.select(0.05):
                if isinstance(key.data, _Waiting):
                    self._read(key.data)
            self._expire()

    def _close(self, w: _Waiting, waiting: bool = True) -> None:
        if waiting and self._waiting.pop(w.sock.fileno(), None) is not None:
            self._sel.unregister(w.sock)
        self.shutdown_request(w.sock)

    # -- handler threads
    def _dispatch(self, w: _Waiting) -> None:
        w.sock.setblocking(True)
        with self._lock:
            self._ready.put(w)
            self._queued += 1
            spawn = self._queued > self._idle and self._threads < self.max_connections
            self._threads += spawn
        if spawn:
            threading.Thread(target=self._work, name="http", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                w = self._ready.get(timeout=self.idle_thread_s)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._queued <= self._idle:  # no request counts on this thread: it ends
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                if w is None:  # drain(): the server is done
                    self._threads -= 1
                    return
                self._queued -= 1
                self._busy += 1
            parked = False
            try:
                parked = self.RequestHandlerClass(w.sock, w.address, self, bytes(w.buf)).parked
            except Exception:
                self.handle_error(w.sock, w.address)
            finally:
                with self._lock:
                    self._busy -= 1
                if not parked:
                    self.shutdown_request(w.sock)

    def park(self, sock: socket.socket, address, leftover: bytes) -> bool:
        """A handler's keep-alive connection back to the selector (False at a stop: close it)."""
        if self.stopping:
            return False
        w = _Waiting(sock, address, leftover, time.monotonic() + self.header_timeout_s, fresh=False)
        if head_complete(w.buf):  # a pipelined request, whole already
            self._dispatch(w)
            return True
        sock.setblocking(False)
        with self._lock:
            self._parked.append(w)
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        return True

    def shutdown(self) -> None:
        """Stop accepting; connections without a request are closed (see ``drain`` for the rest)."""
        self.stopping = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        self._loop_done.wait()

    def drain(self, grace_s: float) -> bool:
        """After ``shutdown``: wait up to ``grace_s`` for every request read to be answered; True if all were."""
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            with self._lock:
                if not self._busy and not self._queued:
                    break
            time.sleep(0.02)
        with self._lock:
            done = not self._busy and not self._queued
            threads = self._threads
        self.grace_over = not done  # what is still queued is answered 503 at once
        for _ in range(threads):
            self._ready.put(None)  # after what is queued: each thread ends once the queue is done
        return done

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):  # a client leaving is no error
            super().handle_error(request, client_address)


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
        self.rfile = _Reader(self._head, self.connection)  # the header reader's bytes come first
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
            self.refuse(HTTPStatus.FORBIDDEN, f"requests from the web page at {origin[:80]!r} are not allowed; "
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
        if self.command == "OPTIONS" and self.headers.get("Origin") and self.headers.get(
                "Access-Control-Request-Method"):
            self._preflight()
            return
        if self.command not in self.methods:
            self.refuse(HTTPStatus.NOT_IMPLEMENTED, f"{self.command} is not supported; use {', '.join(self.methods)}",
                        {"Allow": ", ".join(self.methods)}, close=True)
            return
        why = self.framing_error()
        if why:
            self.refuse(HTTPStatus.BAD_REQUEST, why, close=True)
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
        if not handler.start_stream("text/event-stream"):
            return
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
