"""The kiosk sink: a local web page with the live preview and the captions, for a screen or a browser.

``http://127.0.0.1:8080`` by default (``kiosk`` or ``kiosk:HOST:PORT`` as a sink):

=================  ==========================================================================
``/``              full-screen page: MJPEG preview with the detector's boxes, the caption pushed by
                   server-sent events
``/stream.mjpg``   the preview (multipart JPEG) at the source's frame rate
``/events``        captions as server-sent events (one JSON object each)
``/latest.json``   the newest caption event
``/health``        ``{"ok": true, "captions": N, "uptime_s": ...}``
=================  ==========================================================================

Safety: binding anything but a loopback address needs a token (``kiosk:0.0.0.0:8080?token=...``),
which every request must carry (``?token=`` or ``Authorization: Bearer``).  The Host header must
name the bind address or localhost (DNS rebinding); a web page of another origin gets 403 unless it is
named with ``?allow_origin=``.  Only GET and HEAD.  Each client gets the newest frame and caption when
it is ready for them: a slow or stalled client never slows the pipeline, it just skips frames, and one
that stops reading is dropped after 10 s.  At most ``max_clients`` streams and 4 x ``max_clients``
requests handled at once (silent and slow connections wait in the header reader without a thread); a
connection that has not sent a whole request within ``request_timeout_s`` is closed.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus

import cv2
import numpy as np

from velm_edge.errors import OptionError
from velm_edge.httpd import BoundedServer, EventBoard, GuardedHandler, check_bind, http_url
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
#boxes { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
#boxes rect { fill: none; stroke: #50c8ff; stroke-width: 0.4%; }
#boxes text { fill: #50c8ff; font-family: sans-serif; font-weight: bold; }
</style></head>
<body>
<img id="preview" src="stream.mjpg__TOKEN__" alt="live preview">
<svg id="boxes" preserveAspectRatio="xMidYMid meet"></svg>
<div id="caption">waiting for the first caption...</div>
<div id="meta"></div>
<script>
const preview = document.getElementById("preview"), boxes = document.getElementById("boxes");
let shown = [];  // the newest caption's detections, drawn once the preview has its size
function draw() {  // boxes are in the frame's pixels: the svg's viewBox is the frame
  const w = preview.naturalWidth, h = preview.naturalHeight;
  if (!w || !h) { setTimeout(draw, 100); return; }
  boxes.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const ns = "http://www.w3.org/2000/svg", size = Math.max(12, w / 40);
  boxes.replaceChildren(...shown.flatMap((d) => {
    const [x1, y1, x2, y2] = d.box;
    const rect = document.createElementNS(ns, "rect"), label = document.createElementNS(ns, "text");
    const set = (node, attributes) => Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
    set(rect, {x: x1, y: y1, width: x2 - x1, height: y2 - y1});
    set(label, {x: x1 + 4, y: Math.max(size, y1 - 4), "font-size": size});
    rect.setAttribute("class", "box");
    label.textContent = `${d.label} ${d.score.toFixed(2)}`;
    return [rect, label];
  }));
}
function show(e) {
  if (!e) return;
  document.getElementById("caption").textContent = e.text;
  document.getElementById("meta").textContent = `frame ${e.frame} - ${Math.round(e.frame_age_ms)} ms`;
  shown = e.detections || [];
  draw();
}
fetch("latest.json__TOKEN__").then((r) => r.json()).then(show).catch(() => {});  // what is on now, at once
const events = new EventSource("events__TOKEN__");
events.onmessage = (m) => show(JSON.parse(m.data));
</script>
</body></html>
"""


class KioskSink(Sink):
    wants_frames = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 jpeg_quality: int = 80, max_clients: int = 16, request_timeout_s: float = 5.0,
                 allow_origin: str | None = None):
        if not 1 <= jpeg_quality <= 100 or max_clients < 1:
            raise OptionError(f"kiosk: jpeg_quality must be 1-100 and max_clients >= 1, got {jpeg_quality}, "
                              f"{max_clients}")
        check_bind("kiosk", host, port, token)
        self.host, self.port, self.token = host, port, token
        self.name, self.address = f"kiosk:{host}:{port}", f"{host}:{port}"
        self.jpeg_quality, self.max_clients, self.request_timeout_s = jpeg_quality, max_clients, request_timeout_s
        self.allow_origins = (allow_origin,) if allow_origin else ()
        self.board = EventBoard()  # the captions
        self._frame: np.ndarray | None = None
        self._frame_id = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._cond = threading.Condition()
        self.clients = threading.BoundedSemaphore(max_clients)
        self.started = time.monotonic()
        self._server: BoundedServer | None = None
        self._closing = False

    # -- the pipeline side: never blocks on clients
    def start(self) -> KioskSink:
        handler = type("Handler", (KioskHandler,), {"kiosk": self, "timeout": self.request_timeout_s,
                                                "bind_host": self.host, "token": self.token,
                                                "allow_origins": self.allow_origins})
        self._server = BoundedServer((self.host, self.port), handler, 4 * self.max_clients, self.request_timeout_s)
        self.port = self._server.server_address[1]  # port 0 -> the one the OS chose
        self.address = f"{self.host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, name="kiosk http", daemon=True).start()
        return self

    def frame(self, image: np.ndarray) -> None:
        """A preview frame (BGR); called at the source's frame rate, encoded only when a client asks."""
        with self._cond:
            self._frame, self._frame_id = image, self._frame_id + 1
            self._cond.notify_all()

    @property
    def latest(self) -> CaptionEvent | None:
        return self.board.latest

    @property
    def captions(self) -> int:
        return self.board.count

    def write(self, event: CaptionEvent) -> None:
        self.board.publish(event)

    def stop(self) -> None:
        self._closing = True
        self.board.close()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.drain(self.request_timeout_s)  # answers to what was asked, then the threads end
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return http_url(self.host, self.port) + "/" + (f"?token={self.token}" if self.token else "")

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


class KioskHandler(GuardedHandler):
    kiosk: KioskSink
    methods = ("GET", "HEAD")
    routes = {("GET", "/"): "page", ("GET", "/index.html"): "page", ("GET", "/latest.json"): "latest",
              ("GET", "/health"): "health", ("GET", "/stream.mjpg"): "mjpeg", ("GET", "/events"): "events"}

    def page(self) -> None:
        suffix = f"?token={self.kiosk.token}" if self.kiosk.token else ""
        self.reply(HTTPStatus.OK, PAGE.replace("__TOKEN__", suffix).encode(), "text/html; charset=utf-8")

    def latest(self) -> None:
        latest = self.kiosk.latest
        self.reply_json(HTTPStatus.OK, latest and latest.to_json())

    def health(self) -> None:
        k = self.kiosk
        self.reply_json(HTTPStatus.OK, {"ok": True, "captions": k.captions,
                                        "uptime_s": round(time.monotonic() - k.started, 1)})

    def events(self) -> None:
        self.stream_in_slot(self.kiosk.clients, "too many clients",
                            lambda: self.kiosk.board.stream(self, CaptionEvent.to_json))

    def mjpeg(self) -> None:
        self.stream_in_slot(self.kiosk.clients, "too many clients", self._mjpeg)

    def _mjpeg(self) -> None:
        if not self.start_stream("multipart/x-mixed-replace; boundary=frame"):
            return
        seen = 0
        while not self.kiosk._closing:
            got = self.kiosk.jpeg(seen)
            if got is None:
                continue
            seen, data = got
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode()
                             + b"\r\n\r\n" + data + b"\r\n")
