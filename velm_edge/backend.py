"""The one place that imports a TFLite interpreter package and builds interpreters.

Order for ``backend="auto"``: ai_edge_litert (numpy 2), tflite_runtime (Raspberry Pi OS, numpy 1.x),
then tensorflow.lite as a last resort (a workstation with only TensorFlow), with a warning.
Models are always loaded from bytes, so TFLite's flatbuffer verifier runs before anything is used.
"""

from __future__ import annotations

import importlib
import warnings

BACKENDS = ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow")
_MODULES = {"ai_edge_litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter",
            "tensorflow": "tensorflow.lite"}
_EXTRAS = {"ai_edge_litert": "pip install 'velm-edge[litert]'",
           "tflite_runtime": "pip install 'velm-edge[tflite]' (Python <= 3.11, numpy < 2)",
           "tensorflow": "pip install tensorflow"}


def interpreter_module(backend: str = "auto"):
    """The module that provides ``Interpreter`` for the backend, and the backend's name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    names = ("ai_edge_litert", "tflite_runtime", "tensorflow") if backend == "auto" else (backend,)
    errors = []
    for name in names:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as e:
            errors.append(f"{name}: {e}")
            continue
        if name == "tensorflow" and backend == "auto":
            warnings.warn("using tensorflow.lite because neither ai-edge-litert nor tflite-runtime is installed; "
                          "on a device install " + _EXTRAS["ai_edge_litert"], RuntimeWarning, stacklevel=2)
        return module, name
    hint = _EXTRAS["ai_edge_litert"] + " or " + _EXTRAS["tflite_runtime"] if backend == "auto" else _EXTRAS[backend]
    raise ImportError(f"no TFLite interpreter package for backend {backend!r} ({'; '.join(errors)}). "
                      f"Install one: {hint}")


def make_interpreter(model: bytes, num_threads: int | None = None, backend: str = "auto"):
    """An allocated interpreter for a .tflite model given as bytes (verified on load)."""
    module, _ = interpreter_module(backend)
    interpreter = module.Interpreter(model_content=bytes(model), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
