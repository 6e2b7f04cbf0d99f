"""``RuntimeOptions``: which interpreter package runs a bundle's graphs, on which device, with how many threads.

One object travels from ``Captioner.open`` down to ``backend.make_interpreter``; the command lines
build their ``--threads``, ``--backend`` and ``--device`` flags (and their help) from these fields.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from velm_edge.errors import OptionError
from velm_edge.runtime.choices import BACKENDS, DEVICES, HELP, check

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
        "help": "interpreter threads (default: the interpreter package's choice)"})
    backend: str = field(default="auto", metadata={"help": HELP["backend"], "choices": BACKENDS})
    device: str = field(default="cpu", metadata={"help": HELP["device"]})
    language_threads: int | None = field(default=None, metadata={
        "help": "interpreter threads of the language graph, if not --threads: a decoder step is a few small "
                "matrix products, which a thread pool may slow down (velm-edge bench --sweep-threads measures it)"})
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

    def for_language(self) -> RuntimeOptions:
        """The options the language graph runs with: ``language_threads`` where it is set."""
        if self.language_threads is None:
            return self
        return dataclasses.replace(self, threads=self.language_threads)
