"""Beams as one batch: a language graph made to take several rows in one invoke.

A beam search advances every live beam by one token per step.  Run row by row, that is one invoke per
beam, and each invoke streams all of the language graph's weights (3.4 MB for the photo bundle) for a
single row; run as one batch, the rows share that pass.

The exported language graph has a batch of one, and one thing ties it to that: its GRU step squeezes four
(1, 512) tensors to (512,) (RESHAPE) before adding them to other (1, 512) tensors.  Every other operator
(FULLY_CONNECTED, ADD, MUL, LOGISTIC, TANH, SUB, CONCATENATION on the last axis) treats rows independently.
``rows_free`` rewrites the file in place, in memory: each operator that read a squeezed tensor reads the
tensor before the squeeze instead (the same values and quantization), and the squeeze itself flattens to
(-1,) so that it still prepares at any batch (its output is no longer read).  After that the interpreter's
input resizing is sound, and the captioner proves it for each bundle when it builds the graph
(``Captioner``'s rows graph): ``rows`` rows in one invoke must equal ``rows`` single-row invokes bit for bit
(``same_rows``), and must be faster than them here (``pays``), or it is not used and beams run row by row, as
before.  A compiled Edge TPU graph keeps its static shapes and runs row by row.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from velm_edge.errors import BundleError
from velm_edge.runtime.flatbuffer import FlatbufferReader

RESHAPE = 22  # TFLite BuiltinOperator code


def rows_free(model: bytes) -> bytes | None:
    """``model`` with its batch-squeezing reshapes taken out of the data path (see the module's docstring), or
    None when it has a reshape that is not such a squeeze (its batch cannot be freed this way)."""
    out = bytearray(model)
    try:
        r = FlatbufferReader(model)
        root = r.table(r.u32(0))
        codes = [max(c.scalar(0, "<b"), c.scalar(3, "<i")) for c in root.tables(1)]
        buffers = root.tables(4)
        graph = root.tables(2)[0]
        tensors, operators = graph.tables(0), graph.tables(3)
        unsqueezed: dict[int, int] = {}  # squeezed tensor -> the tensor before the squeeze
        for op in operators:
            if codes[op.scalar(0, "<I")] != RESHAPE:
                continue
            inputs, outputs = op.ints(1), op.ints(2)
            before, after = tensors[inputs[0]].ints(0), tensors[outputs[0]].ints(0)
            if before[:1] != [1] or before[1:] != after or len(inputs) < 2:
                return None  # a reshape that does more than drop the batch of one
            shape = buffers[tensors[inputs[1]].scalar(2, "<I")].vector(0)
            if shape is None or shape[1] != 4 * len(after):
                return None
            if len(after) != 1:
                return None  # (1, a, b) -> (a, b): flattening would not keep the rows apart
            unsqueezed[outputs[0]] = inputs[0]
            struct.pack_into("<i", out, shape[0], -1)  # flatten: prepares at any batch; nothing reads it now
        if not unsqueezed:
            return model
        for op in operators:
            if codes[op.scalar(0, "<I")] == RESHAPE:
                continue
            listed = op.vector(1)
            start, count = listed if listed is not None else (0, 0)
            for k in range(count):
                index = struct.unpack_from("<i", model, start + 4 * k)[0]
                if index in unsqueezed:
                    struct.pack_into("<i", out, start + 4 * k, unsqueezed[index])
        if any(i in unsqueezed for i in graph.ints(2)):
            return None  # a graph output is a squeezed tensor
    except (BundleError, IndexError, struct.error):
        return None
    return bytes(out)


def same_rows(single, batch, rows: int, seed: int = 0) -> bool:
    """True when ``batch`` (a graph resized to ``rows`` rows) gives, for random inputs, exactly the outputs of
    ``single`` (the batch-of-one graph) run row by row.  Both are ``Graph``s with the same inputs."""
    rng = np.random.default_rng(seed)
    given = {}
    for name, detail in batch.inputs.items():
        info = np.iinfo(detail["dtype"]) if np.issubdtype(detail["dtype"], np.integer) else None
        width = single.shape(name)[1:]
        given[name] = (rng.integers(info.min, info.max + 1, (rows, *width)) if info is not None
                       else rng.standard_normal((rows, *width))).astype(detail["dtype"])
    together = batch.run(**given)
    for row in range(rows):
        alone = single.run(**{name: value[row:row + 1] for name, value in given.items()})
        if any(not np.array_equal(alone[name][0], together[name][row]) for name in alone):
            return False
    return True


def pays(single, batch, rows: int, repeats: int = 7) -> bool:
    """True when one invoke of ``batch`` (``rows`` rows) takes less than 90% of ``rows`` invokes of ``single``,
    medians of ``repeats`` each, on this machine and interpreter package.  It is not everywhere: the photo
    bundle's 3 rows take 1.2x one row's time with ai-edge-litert (XNNPACK), but 3.0x with tflite-runtime 2.14,
    whose int8 fully-connected kernel has a fast path for one row only (and 2 rows cost as much as 3)."""
    def median_s(graph) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            graph.interpreter.invoke()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    median_s(batch), median_s(single)  # warm: first invokes prepare kernels
    return median_s(batch) < 0.9 * rows * median_s(single)
