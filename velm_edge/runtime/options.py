"""``RuntimeOptions``: which interpreter package runs a bundle's graphs, on which device, with how many threads.

One object travels from ``Captioner.open`` down to ``backend.make_interpreter``; the command lines
build their ``--threads``, ``--backend`` and ``--device`` flags (and their help) from these fields.

Threads are placed by measurement (docs/engineering.md, "Threads placed by measurement"): the vision graph
is a stack of convolutions that a thread pool splits well (6.7 -> 4.1 ms with two threads on a 2-core VM),
so by default it takes one thread per core this process may use, at most ``MAX_AUTO_THREADS``; a decoder
step is a few small matrix products that a pool only slows down (7.2 -> 7.9 ms a caption's decoding with
two), so the language graph takes one.  Where captions run side by side (``velm-edge run``'s vision-ahead
thread beside the decoder, ``serve``'s workers) the command shares the cores out with ``auto_threads``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

from velm_edge.errors import OptionError
from velm_edge.runtime.choices import BACKENDS, DEVICES, HELP, check

MAX_AUTO_THREADS = 4  # a Raspberry Pi's cores; larger machines were not measured, so the default stops there
_DEVICE = re.compile(r"^(cpu|auto|edgetpu|usb|pci)(:\d+)?$")


@dataclass(frozen=True)
class Device:
    """A parsed ``device`` option."""
    kind: str  # cpu | auto | edgetpu
    spec: str | None = None  # libedgetpu's "device" option: usb, usb:0, pci:0, ... (None: the first one)

    @classmethod
    def parse(cls, text: str) -> Device:
        m = _DEVICE.match(text or "")
        if not m or (m.group(1) in ("cpu", "auto", "edgetpu") and m.group(2)):
            raise OptionError(f"device must be {DEVICES}; got {text!r}")
        if m.group(1) in ("usb", "pci"):
            return cls("edgetpu", text)
        return cls(m.group(1))


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int | None = field(default=None, metadata={
        "help": "interpreter threads of the vision graph (default: one per core, at most 4, shared out where "
                "captions run side by side)"})
    backend: str = field(default="auto", metadata={"help": HELP["backend"], "choices": BACKENDS})
    device: str = field(default="cpu", metadata={"help": HELP["device"]})
    language_threads: int | None = field(default=None, metadata={
        "help": "interpreter threads of the language graph (default: 1: a decoder step is a few small matrix "
                "products, which a thread pool slows down; velm-edge bench --sweep-threads measures it)"})
    batch_beams: bool = field(default=True, metadata={
        "help": "run a beam search's beams as one batch, one invoke of the language graph per step (no: one "
                "invoke per beam, as before; the captions are the same)"})

    def __post_init__(self) -> None:
        check("backend", self.backend, BACKENDS)
        for name in ("threads", "language_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise OptionError(f"{name} must be a whole number >= 1 (or None), got {value!r}")
        Device.parse(self.device)  # refused here, before any bundle is read

    def for_vision(self) -> RuntimeOptions:
        """The options the vision graph runs with: ``threads``, or one per core (``auto_threads``)."""
        return dataclasses.replace(self, threads=self.threads or auto_threads())

    def for_language(self) -> RuntimeOptions:
        """The options the language graph runs with: ``language_threads``, or one thread."""
        return dataclasses.replace(self, threads=self.language_threads or 1)

    def sharing(self, side_by_side: int) -> RuntimeOptions:
        """These options where ``side_by_side`` threads caption (or decode) at once: the vision graph's default
        threads are this process's cores shared among them (``auto_threads``); a set ``threads`` stays."""
        return self if self.threads is not None else dataclasses.replace(self, threads=auto_threads(side_by_side))


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (which taskset and a container's cpuset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_threads(side_by_side: int = 1) -> int:
    """The vision graph's default threads: this process's cores (at most ``MAX_AUTO_THREADS``) over the
    ``side_by_side`` threads that caption at once, at least one."""
    return max(1, min(usable_cores(), MAX_AUTO_THREADS) // max(1, side_by_side))
