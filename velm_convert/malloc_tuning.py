"""Undo a glibc malloc setting that TensorFlow's generator datasets make, which halves CPU training speed.

When a ``tf.data`` generator dataset starts (Keras wraps every ``PyDataset`` in one), TensorFlow calls
``mallopt(M_TRIM_THRESHOLD, 128 KiB)`` and logs "Memory patch applied: M_TRIM_THRESHOLD=128 kb was
set".  Setting any malloc threshold by hand also switches off glibc's *dynamic* mmap threshold, so
from then on every tensor larger than 128 KiB (all activations of a conv batch) is mmap-ed on
allocation, munmap-ed on free, and its pages are faulted in and zeroed again at the next step.  On
the 2-core benchmark machine this showed as 25-45 % system time and 120-160 images/s instead of
220-250 for the shapes model (``benchmarks/train_throughput.py``).  Putting the thresholds back up
(freed memory stays in the heap for the next step) is all the fix needs.

Only glibc has ``mallopt``; elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import keras

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap instead of returning it to the kernel
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit: tensors below 32 MiB come from the heap


@functools.cache
def _mallopt():
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds; True when both were set (False off glibc)."""
    fn = _mallopt()
    if fn is None:
        return False
    return bool(fn(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) & bool(fn(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class KeepFreedMemory(keras.callbacks.Callback):
    """Re-applies ``keep_freed_memory`` at every batch: TensorFlow lowers the threshold again whenever
    it starts a generator dataset (each epoch, each validation pass), and the call costs a microsecond."""

    def on_train_batch_begin(self, batch, logs=None):
        keep_freed_memory()

    def on_test_batch_begin(self, batch, logs=None):
        keep_freed_memory()

    def on_predict_batch_begin(self, batch, logs=None):
        keep_freed_memory()
