"""A flatbuffer read straight from its bytes: a root offset, tables with vtables, vectors and strings; enough
of the format for TFLite's schema, with every offset bounds-checked (``BundleError`` outside the file).

The runtime reads a language graph's operators with it to run beams as one batch (``batching``); the
tools read whole models with it (``velm_edge.tools.tflite_model``).
"""

from __future__ import annotations

import struct

from velm_edge.errors import BundleError


class FlatbufferReader:
    """Bounds-checked reads of a flatbuffer's scalars, tables, vectors and strings (enough for TFLite's schema)."""

    def __init__(self, data: bytes):
        self.data = data

    def _unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise BundleError(f"offset {pos} outside the {len(self.data)}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def table(self, pos: int) -> _Table:
        return _Table(self, pos)


class _Table:
    def __init__(self, r: FlatbufferReader, pos: int):
        self.r, self.pos = r, pos
        self.vtable = pos - r._unpack("<i", pos)
        self.vsize = r._unpack("<H", self.vtable)

    def _field(self, i: int) -> int | None:
        slot = 4 + 2 * i
        if slot >= self.vsize:
            return None
        off = self.r._unpack("<H", self.vtable + slot)
        return self.pos + off if off else None

    def scalar(self, i: int, fmt: str, default=0):
        pos = self._field(i)
        return default if pos is None else self.r._unpack(fmt, pos)

    def _target(self, i: int) -> int | None:
        pos = self._field(i)
        return None if pos is None else pos + self.r.u32(pos)

    def table(self, i: int) -> _Table | None:
        pos = self._target(i)
        return None if pos is None else self.r.table(pos)

    def vector(self, i: int) -> tuple[int, int] | None:
        """(start of the elements, count)."""
        pos = self._target(i)
        return None if pos is None else (pos + 4, self.r.u32(pos))

    def ints(self, i: int) -> list[int]:
        v = self.vector(i)
        if v is None:
            return []
        start, n = v
        if start + 4 * n > len(self.r.data):
            raise BundleError("a vector runs past the end of the file")
        return list(struct.unpack_from(f"<{n}i", self.r.data, start))

    def tables(self, i: int) -> list[_Table]:
        v = self.vector(i)
        if v is None:
            return []
        start, n = v
        return [self.r.table(start + 4 * k + self.r.u32(start + 4 * k)) for k in range(n)]

    def string(self, i: int) -> str:
        v = self.vector(i)
        if v is None:
            return ""
        start, n = v
        return self.r.data[start:start + n].decode("utf-8", errors="replace")
