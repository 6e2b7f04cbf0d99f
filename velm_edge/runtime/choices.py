"""The runtime's fixed vocabularies, defined once: errors, bundle checks and ``--help`` all read them here.

Import-free on purpose (no OpenCV, no numpy), so the bundle contract and both command lines can use it.
"""

from __future__ import annotations

from velm_edge.errors import OptionError

RESIZE_MODES = ("stretch", "crop", "letterbox")  # how a frame is fitted to the model's square input
PRECISIONS = ("int8", "float32", "dynamic")  # how a bundle's graphs are quantized
BACKENDS = ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow")  # TFLite interpreter packages
COLOR_ORDERS = ("RGB", "BGR")  # the channel order a bundle's vision graph expects
DEVICES = "cpu, auto, edgetpu, usb, usb:N, pci or pci:N"  # see runtime.backend.Device

HELP = {
    "resize": "how frames are fitted to the model: stretch, crop (centre) or letterbox (grey bars)",
    "precision": "int8: full-integer (Edge TPU friendly); float32: reference; dynamic: int8 weights, float "
                 "activations",
    "backend": "TFLite interpreter package (auto: ai_edge_litert, then tflite_runtime, then tensorflow)",
    "device": "cpu, auto (Edge TPU if present, else CPU), edgetpu, usb[:N], pci[:N]",
}


def check(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else an OptionError naming ``kind`` and the allowed values."""
    if value not in allowed:
        raise OptionError(f"{kind} must be one of {', '.join(allowed)}; got {value!r}")
    return value
