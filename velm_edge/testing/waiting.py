"""``wait_until``: wait for a condition with a deadline, instead of sleeping a fixed time and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout_s: float, what: str = "the condition",
               poll_s: float = 0.02) -> None:
    """Return as soon as ``condition()`` is true (polled every ``poll_s``); AssertionError naming ``what`` when it
    is still false after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(poll_s)
