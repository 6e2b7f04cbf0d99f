"""systemd integration without libsystemd: readiness, a watchdog fed by real progress, and stopping.

Under a unit with ``Type=notify`` and ``WatchdogSec=30`` (examples/velm-edge.service), ``velm-edge run``
sends ``READY=1`` once its sinks are up, ``WATCHDOG=1`` whenever it has processed a frame (captioned
it, or skipped it as unchanged) at most every quarter of the watchdog period, and ``STOPPING=1`` when it
ends.  The pings come from the captioning loop itself, never from a timer: if frames stop arriving
(a camera gone for good) or the loop hangs, the pings stop and systemd restarts the service after
``WatchdogSec``.  Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, environ: dict | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address  # "@": abstract namespace
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else 0.0
        self._last_ping = 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> None:
        if not self.address:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # a full queue drops a ping; it never stalls the captioning loop
            self._sock.sendto(message.encode(), self.address)
        except OSError:  # systemd gone or the socket unusable: captioning goes on regardless
            pass

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def progress(self) -> None:
        """Call on every processed frame; pings the watchdog at most every quarter period."""
        if not self.watchdog_s:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s / 4:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
