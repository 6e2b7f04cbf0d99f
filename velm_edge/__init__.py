"""velm-edge: live, offline image captions on Raspberry Pi and Coral Edge TPU.

This package is the device half: numpy + OpenCV (+ a TFLite interpreter), never TensorFlow.

    from velm_edge import Captioner
    with Captioner.open() as cap:                 # the shipped photo bundle (real-world; "shapes" for synth:)
        print(cap.caption(frame).text)            # frame: BGR uint8 from OpenCV, any size
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("velm-edge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

_LAZY = {"Captioner": "velm_edge.captioner", "Caption": "velm_edge.captioner", "DecodeOptions": "velm_edge.decode",
         "BundleError": "velm_edge.errors", "DEFAULT_BUNDLE": "velm_edge.bundle",
         "live_captions": "velm_edge.pipeline", "PushCaptioner": "velm_edge.pipeline"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """The public names, imported on first use (``import velm_edge`` alone stays cheap)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'velm_edge' has no attribute {name!r}")
