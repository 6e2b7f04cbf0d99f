"""``Refusal``: a request the service answers with an error, for every route and protocol alike: its HTTP
status, what to fix, extra headers, and the request field at fault (OpenAI's errors name it)."""

from __future__ import annotations

from http import HTTPStatus


class Refusal(Exception):
    def __init__(self, status: HTTPStatus, why: str, headers: dict | None = None, param: str | None = None):
        super().__init__(why)
        self.status, self.headers, self.param = status, headers, param


class Busy(Refusal):
    """The queue is full, or the service is stopping."""

    def __init__(self):
        super().__init__(HTTPStatus.SERVICE_UNAVAILABLE, "all captioning threads are busy and the queue is full (or "
                         "the service is stopping); retry later", {"Retry-After": "1"})
