"""The one place that imports a TFLite interpreter package and builds interpreters.

Interpreter packages, in the order ``backend="auto"`` tries them: ai_edge_litert (numpy 2),
tflite_runtime (Raspberry Pi OS, numpy 1.x), then tensorflow.lite as a last resort (a workstation
with only TensorFlow), with a warning.  Models are always loaded from bytes, so TFLite's flatbuffer
verifier runs before anything is used.

Devices: ``cpu``; ``edgetpu`` / ``usb`` / ``usb:N`` / ``pci`` / ``pci:N`` (a Coral Edge TPU through
libedgetpu, failing clearly when it cannot be used); ``auto`` (the first Edge TPU if one can be
opened, otherwise the CPU with a warning).
"""

from __future__ import annotations

import ctypes
import importlib
import platform
import warnings

from velm_edge.errors import BackendError, EdgeTPUError
from velm_edge.runtime.choices import BACKENDS, check
from velm_edge.runtime.options import Device, RuntimeOptions

_MODULES = {"ai_edge_litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter",
            "tensorflow": "tensorflow"}  # tf.lite is an attribute of the API, not an importable module
_EXTRAS = {"ai_edge_litert": "pip install 'velm-edge[litert]'",
           "tflite_runtime": "pip install 'velm-edge[tflite]' (Python <= 3.11, numpy < 2)",
           "tensorflow": "pip install tensorflow"}
EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EDGETPU_HELP = ("install the Edge TPU runtime (Debian/Raspberry Pi OS: add Coral's apt repository, then "
                "'sudo apt-get install libedgetpu1-std') and plug the accelerator in")


def interpreter_module(backend: str = "auto"):
    """The module that provides ``Interpreter`` for the backend, and the backend's name."""
    check("backend", backend, BACKENDS)
    names = ("ai_edge_litert", "tflite_runtime", "tensorflow") if backend == "auto" else (backend,)
    errors = []
    for name in names:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as e:
            errors.append(f"{name}: {e}")
            continue
        if name == "tensorflow":
            module = module.lite
        if name == "tensorflow" and backend == "auto":
            warnings.warn("using tensorflow.lite because neither ai-edge-litert nor tflite-runtime is installed; "
                          "on a device install " + _EXTRAS["ai_edge_litert"], RuntimeWarning, stacklevel=2)
        return module, name
    hint = _EXTRAS["ai_edge_litert"] + " or " + _EXTRAS["tflite_runtime"] if backend == "auto" else _EXTRAS[backend]
    raise BackendError(f"no TFLite interpreter package for backend {backend!r} ({'; '.join(errors)}). "
                      f"Install one: {hint}")


def edgetpu_library() -> str:
    return EDGETPU_LIBRARIES.get(platform.system(), EDGETPU_LIBRARIES["Linux"])


def load_edgetpu_delegate(module, spec: str | None = None):
    """libedgetpu's delegate for the device ``spec``; EdgeTPUError (with what to do) when it cannot load."""
    library = edgetpu_library()
    try:  # checked first: a failed load_delegate also prints a stray traceback from Delegate.__del__
        ctypes.CDLL(library)
    except OSError as e:
        raise EdgeTPUError(f"Edge TPU runtime {library} not found ({e}); {EDGETPU_HELP}; "
                           f"'velm-edge doctor' shows what is missing") from None
    load = getattr(module, "load_delegate", None) or module.experimental.load_delegate
    try:
        return load(library, {"device": spec} if spec else {})
    except (ValueError, OSError, RuntimeError) as e:
        where = f"device {spec!r}" if spec else "any Edge TPU"
        raise EdgeTPUError(f"{library} loaded but could not open {where} ({e}); is the accelerator plugged "
                           f"in (lsusb shows 'Global Unichip' or 'Google'), and may this user access it?") from None


def make_interpreter(model: bytes, options: RuntimeOptions = RuntimeOptions(), edgetpu_model: bytes | None = None):
    """An allocated interpreter for a .tflite model given as bytes (verified on load).

    ``edgetpu_model``: the same graph compiled by edgetpu_compiler; used instead of ``model`` when an Edge TPU
    delegate is loaded (a compiled graph cannot run without one).  Returns ``(interpreter, info)`` where
    info says which backend and device run it and whether the compiled graph is the one running.
    """
    module, name = interpreter_module(options.backend)
    dev = Device.parse(options.device)
    delegates = []
    if dev.kind != "cpu":
        try:
            delegates = [load_edgetpu_delegate(module, dev.spec)]
        except EdgeTPUError as e:
            if dev.kind != "auto":
                raise
            warnings.warn(f"no Edge TPU, running on the CPU: {e}", RuntimeWarning, stacklevel=2)
    compiled = bool(delegates) and edgetpu_model is not None
    interpreter = module.Interpreter(model_content=bytes(edgetpu_model if compiled else model),
                                     num_threads=options.threads, experimental_delegates=delegates or None)
    interpreter.allocate_tensors()
    return interpreter, {"backend": name, "device": "edgetpu" if delegates else "cpu", "compiled": compiled}
