"""The one HTTP layer of velm-edge: the kiosk page (sinks/kiosk.py) and the caption service (service/)
both stand on it.

- ``connections``: ``BoundedServer``, one selector thread reads every connection's request line and
  headers (a waiting connection costs a socket, not a thread; ``header_timeout_s`` in total, idle
  keep-alive included, so slow, silent and idle clients are cut off and the oldest make room for new
  ones; a head not whole within 64 KiB gets 414 or 431 from that thread); whole requests go to at most
  ``max_connections`` handler threads; ``shutdown`` + ``drain``
  answer what was read, then stop.
- ``guard``: ``GuardedHandler``, GET/HEAD/POST dispatch through ``routes``; HTTP/1.1 framing checked as
  h11 does (one Content-Length, no body on GET/HEAD, origin-form targets); the Host check (one Host
  header, no DNS rebinding), the Origin check (a foreign web page gets 403; CORS only for
  ``allow_origins``), the bearer token (``?token=`` or ``Authorization: Bearer``), and replies as text
  or JSON; a route that fails still answers 500.  Also the bind checks (``check_bind``, ``http_url``).
- ``events``: ``EventBoard``, the newest event and a count, for long polls and server-sent events.

Imports only ``velm_edge.errors``; every room may use it.
"""

from velm_edge.httpd.connections import BoundedServer
from velm_edge.httpd.events import EventBoard
from velm_edge.httpd.guard import GuardedHandler, check_bind, host_name, http_url, is_loopback

__all__ = ["BoundedServer", "EventBoard", "GuardedHandler", "check_bind", "host_name", "http_url", "is_loopback"]
