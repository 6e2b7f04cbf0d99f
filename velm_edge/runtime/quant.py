"""Quantize / dequantize maths for int8 (and uint8) tensors: the one place that does it.

TFLite's affine quantization: ``real = scale * (q - zero_point)``.  Integer arithmetic is done in
int32 before any zero point is subtracted, so int8 values never wrap around.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QParams:
    scale: float  # 0 means "not quantized": the tensor holds real values
    zero_point: int
    dtype: str  # numpy dtype name of the tensor: int8, uint8, float32, ...

    @property
    def quantized(self) -> bool:
        return self.scale > 0 and np.dtype(self.dtype).kind in "iu"

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: dict) -> QParams:
        return cls(float(d["scale"]), int(d["zero_point"]), str(d["dtype"]))

    @classmethod
    def of(cls, detail: dict) -> QParams:
        """From an interpreter's input/output detail dict."""
        scale, zp = detail.get("quantization", (0.0, 0))
        return cls(float(scale), int(zp), np.dtype(detail["dtype"]).name)


def quantize(x: np.ndarray, q: QParams) -> np.ndarray:
    """Real values -> the tensor's dtype (rounded, saturated).  Unquantized tensors are just cast."""
    if not q.quantized:
        return np.asarray(x, dtype=q.dtype)
    info = np.iinfo(q.dtype)
    v = np.round(np.asarray(x, np.float64) / q.scale) + q.zero_point
    return np.clip(v, info.min, info.max).astype(q.dtype)


def dequantize(v: np.ndarray, q: QParams) -> np.ndarray:
    """Tensor values -> float32 reals."""
    if not q.quantized:
        return np.asarray(v, np.float32)
    return ((np.asarray(v).astype(np.int32) - q.zero_point) * q.scale).astype(np.float32)


class Dequantizer:
    """``dequantize`` fixed to one tensor's parameters, for hot loops (a decode.ToReal).  For an 8-bit tensor it
    also holds ``table``: the real value of each of the 256 bytes, in float64 (index by the bytes' uint8 view),
    from which decode.log_softmax reads a step's log-probabilities without dequantizing the rows."""

    def __init__(self, q: QParams):
        self.q = q
        self.table = None
        if q.quantized and np.dtype(q.dtype).itemsize == 1:
            codes = np.arange(256, dtype=np.uint8).view(q.dtype)  # the value each byte stands for
            self.table = dequantize(codes, q).astype(np.float64)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        return dequantize(v, self.q)


def requantize(v: np.ndarray, src: QParams, dst: QParams) -> np.ndarray:
    """Values of one tensor fed to another: a no-op when both use the same parameters."""
    if src == dst:
        return v
    return quantize(dequantize(v, src), dst)


def requantizer(src: QParams, dst: QParams):
    """``requantize`` fixed to one (src, dst) pair, for hot loops: identity when the parameters match,
    a 256-entry lookup table between 8-bit tensors (exactly ``requantize``'s result), else the maths."""
    if src == dst:
        return lambda v: v
    if src.quantized and np.dtype(src.dtype).itemsize == 1:
        info = np.iinfo(src.dtype)
        table = requantize(np.arange(info.min, info.max + 1).astype(src.dtype), src, dst)
        offset = -int(info.min)
        return lambda v: table[v.astype(np.int16) + offset]
    return lambda v: requantize(v, src, dst)
