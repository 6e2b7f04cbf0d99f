"""A .tflite file read directly: tensors, operators and buffers, and from them a graph's cost.

No interpreter and no flatbuffers package: the TFLite schema's few tables this needs are read from the
bytes (a flatbuffer is a root offset, tables with vtables, vectors and strings).  ``cost(model)`` counts
multiply-accumulates per operator from the weight shapes, the bytes of constant data (weights and
biases), and the activation bytes (every non-constant tensor, and the peak of those alive at once when
the operators run in order).  ``velm-edge info`` and the performance projection report them.

Every offset is bounds-checked; a file that is not a flatbuffer of this schema raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from velm_edge.errors import BundleError
from velm_edge.runtime.flatbuffer import FlatbufferReader

# TFLite BuiltinOperator codes (tensorflow/lite/schema/schema.fbs) for the ops this project meets.
OP_NAMES = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
            6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU",
            21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 28: "TANH", 32: "CUSTOM", 34: "PAD", 36: "GATHER",
            39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 43: "SQUEEZE", 45: "STRIDED_SLICE", 53: "CAST", 83: "PACK",
            114: "QUANTIZE", 117: "HARD_SWISH"}
# TensorType -> bytes per element
TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 12: 8, 15: 4, 16: 2, 17: 1}
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
              10: "float64", 12: "uint64", 15: "uint32", 16: "uint16", 17: "int4"}  # tests/test_opcheck.py pins them


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    constant: bool  # holds data in the file (weights, biases, shapes)


@dataclass(frozen=True)
class Operator:
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Model:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def read(data: bytes) -> Model:
    """The first subgraph of a .tflite file."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BundleError("not a TFLite flatbuffer (no TFL3 identifier)")
    r = FlatbufferReader(data)
    model = r.table(r.u32(0))
    codes = []
    for c in model.tables(1):
        code = max(c.scalar(0, "<b"), c.scalar(3, "<i"))
        codes.append(OP_NAMES.get(code, f"OP_{code}") if code != 32 else f"CUSTOM:{c.string(1)}")
    buffer_bytes = []
    for b in model.tables(4):
        v = b.vector(0)
        buffer_bytes.append(v[1] if v else b.scalar(2, "<Q"))
    graphs = model.tables(2)
    if not graphs:
        raise BundleError("the model has no subgraph")
    g = graphs[0]
    tensors = []
    for t in g.tables(0):
        shape = tuple(t.ints(0))
        kind = t.scalar(1, "<b")
        buf = t.scalar(2, "<I")
        held = buffer_bytes[buf] if 0 < buf < len(buffer_bytes) else 0
        count = 1
        for d in shape:
            count *= max(d, 1)
        tensors.append(Tensor(t.string(3), shape, TYPE_NAMES.get(kind, str(kind)),
                              held or count * TYPE_BYTES.get(kind, 1), held > 0))
    ops = []
    for o in g.tables(3):
        index = o.scalar(0, "<I")
        if index >= len(codes):
            raise BundleError(f"operator code index {index} out of range")
        op = Operator(codes[index], tuple(o.ints(1)), tuple(o.ints(2)))
        if any(not -1 <= i < len(tensors) for i in op.inputs + op.outputs):
            raise BundleError(f"{op.op}: a tensor index out of range")
        ops.append(op)
    return Model(tuple(tensors), tuple(ops), tuple(g.ints(1)), tuple(g.ints(2)))


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def op_macs(m: Model, op: Operator) -> int:
    """Multiply-accumulates of one operator (0 for pooling, elementwise and shape ops)."""
    t = m.tensors
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) >= 2:
        out, w = t[op.outputs[0]].shape, t[op.inputs[1]].shape
        if op.op == "CONV_2D":  # weights (Cout, kh, kw, Cin); output (N, H, W, Cout)
            return _prod(out) * _prod(w[1:])
        if op.op == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, Cout)
            return _prod(out) * w[1] * w[2]
        return _prod(out) * w[-1]  # fully connected: weights (units, in); every output sums `in` products
    return 0


def cost(m: Model) -> dict:
    """MACs, constant bytes, and activation bytes (all, and the peak alive at once in operator order)."""
    per_op = [(op.op, op_macs(m, op)) for op in m.operators]
    acts = [i for i, t in enumerate(m.tensors) if not t.constant]
    end = len(m.operators)
    born = {i: -1 for i in m.inputs}  # graph inputs are alive from the start
    dies = {i: end for i in m.outputs}  # graph outputs until the end
    for k, op in enumerate(m.operators):
        for i in op.outputs:
            born.setdefault(i, k)
        for i in op.inputs:
            if i >= 0:
                dies[i] = max(dies.get(i, k), k)
    alive = [(born[i], dies.get(i, born[i]), m.tensors[i].nbytes) for i in acts if i in born]
    peak = max((sum(n for b, d, n in alive if b <= k <= d) for k in range(end)), default=0)
    macs_by_op: dict[str, int] = {}
    for name, n in per_op:
        macs_by_op[name] = macs_by_op.get(name, 0) + n
    return {"macs": sum(n for _, n in per_op), "weight_bytes": sum(t.nbytes for t in m.tensors if t.constant),
            "activation_bytes": sum(m.tensors[i].nbytes for i in acts), "peak_activation_bytes": peak,
            "macs_by_op": dict(sorted(macs_by_op.items()))}
