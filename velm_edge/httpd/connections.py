"""``BoundedServer``: connections, request heads read by one selector thread, and the handler threads that
take whole requests (see the package's docstring)."""

from __future__ import annotations

import json
import queue
import select
import selectors
import socket
import sys
import threading
import time
from http.server import HTTPServer


class RequestReader:
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
    (a request line that is not ``METHOD TARGET HTTP/x.y``).  A head that is not whole within
    ``MAX_HEAD_BYTES`` is never handed on: the selector answers it (``BoundedServer._too_large``)."""
    end = buf.find(b"\n")
    if end < 0:
        return False
    if not buf[:end].rstrip().split(b" ")[-1].startswith(b"HTTP/"):
        return True  # garbage or HTTP/0.9: the parser answers it without headers
    return buf.find(b"\n\r\n", end) >= 0 or buf.find(b"\n\n", end) >= 0


MAX_HEAD_BYTES = 65537  # a request line and headers not whole within this get 414 or 431 from the selector thread,
# which closes the connection: a waiting connection holds at most this plus one read of buffer, so the waiting ones
# cannot swell the process, and an endless header block never reaches a handler thread


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
    keep_alive_poll_s = 0.002  # after an answer, wait this long for the next request on the handler's thread

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
        elif len(w.buf) > MAX_HEAD_BYTES:
            self._too_large(w)

    def _too_large(self, w: _Waiting) -> None:
        """Answer a head that is not whole within ``MAX_HEAD_BYTES`` from this thread and close the connection, as
        nginx does: 414 while the request line has not ended, else 431.  In the handler's error format (JSON for
        the API); what the client already sent is read first, so the answer is not lost to a reset."""
        line_ended = b"\n" in w.buf
        status, phrase = (431, "Request Header Fields Too Large") if line_ended else (414, "URI Too Long")
        why = "the request's headers are too large" if line_ended else "the request line is too long"
        if getattr(self.RequestHandlerClass, "json_errors", False):
            body, kind = json.dumps({"error": why, "status": status}).encode(), "application/json"
        else:
            body, kind = (why + "\n").encode(), "text/plain; charset=utf-8"
        answer = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n").encode() + body
        try:
            for _ in range(16):  # what is already in the socket's buffer (a bounded amount)
                if not w.sock.recv(65536):
                    break
        except OSError:
            pass
        try:
            w.sock.send(answer)  # a few hundred bytes: the socket's send buffer takes them whole
        except OSError:
            pass
        self._close(w)

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
        if not head_complete(w.buf) and self.keep_alive_poll_s > 0:
            # a client in a loop sends its next request within a millisecond of its answer: read that here
            # instead of through the selector thread, which saves two thread hand-offs a request
            try:
                if select.select([sock], [], [], self.keep_alive_poll_s)[0]:
                    data = sock.recv(65536)
                    if not data:
                        return False  # the client closed its end
                    w.buf += data
            except OSError:
                return False
        if head_complete(w.buf):  # a pipelined request, or the next one read above, whole already
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
