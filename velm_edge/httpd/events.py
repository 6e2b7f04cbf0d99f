"""``EventBoard``: the newest event and how many there were, for long polls and server-sent events."""

from __future__ import annotations

import json
import threading

from velm_edge.httpd.guard import GuardedHandler


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
