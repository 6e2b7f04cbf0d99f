"""velm-edge's workstation half: define, train, evaluate (and later quantize) the Keras VELM."""

from velm_edge import __version__

__all__ = ["__version__"]
