"""velm-edge: live, offline image captions on Raspberry Pi and Coral Edge TPU.

This package is the device half: numpy + OpenCV (+ a TFLite interpreter), never TensorFlow.
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("velm-edge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
