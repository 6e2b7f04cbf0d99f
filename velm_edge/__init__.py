"""velm-edge: live, offline image captions on Raspberry Pi and Coral Edge TPU.

This package is the device half: numpy + OpenCV (+ a TFLite interpreter), never TensorFlow.  Its rooms,
in the order a frame passes through them: ``live/`` (sources -> reader -> captions), ``runtime/``
(bundle -> caption), ``sinks/`` (where captions go); ``service/`` serves captions over local HTTP, and
``tools/`` holds the command line and its reports.

    from velm_edge import Captioner
    with Captioner.open() as cap:                 # the shipped photo bundle (real-world; "shapes" for synth:)
        print(cap.caption(frame).text)            # frame: BGR uint8 from OpenCV, any size
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("velm-edge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

_LAZY = {"Captioner": "velm_edge.runtime.captioner", "Caption": "velm_edge.runtime.captioner",
         "DecodeOptions": "velm_edge.runtime.decode", "RuntimeOptions": "velm_edge.runtime.options",
         "Detection": "velm_edge.runtime.detect", "DetectOptions": "velm_edge.runtime.detect",
         "DEFAULT_BUNDLE": "velm_edge.runtime.bundle",
         "live_captions": "velm_edge.live.pipeline", "LiveOptions": "velm_edge.live.options",
         "CaptionEvent": "velm_edge.live.events", "PushCaptioner": "velm_edge.live.push",
         "VelmError": "velm_edge.errors", "BundleError": "velm_edge.errors", "SourceError": "velm_edge.errors",
         "OptionError": "velm_edge.errors", "FrameError": "velm_edge.errors"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """The public names, imported on first use (``import velm_edge`` alone stays cheap)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'velm_edge' has no attribute {name!r}")
