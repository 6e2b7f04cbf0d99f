"""A TensorFlow.js *graph model* (``model.json`` + ``.bin`` shards) as a TensorFlow concrete function.

No tensorflowjs package: ``modelTopology`` is a GraphDef written as JSON, and the weights are the shards
concatenated and read in ``weightsManifest`` order.  Each entry has a name (the Const node it fills), a
shape and a dtype; an entry with ``quantization`` is stored narrower (``float16``, or ``uint8``/``uint16``
with ``scale`` and ``min``) and widened here.  int32 entries may fill Const nodes declared int64: the value
is cast to the dtype the node declares.

Before import, three rewrites make the graph one that quantizes to a full-integer Edge TPU graph:
- ``LeakyRelu(x)`` -> ``alpha * x + Relu((1 - alpha) * x)`` (LEAKY_RELU is not on the Edge TPU list; see
  ``_leaky_relu_as_relu_sum`` for why not the shorter forms);
- ``SplitV`` into unequal parts -> one ``Slice`` a part (SPLIT_V is not on the list either);
- a max-pool's ``PadV2`` with a constant of -inf -> replicate padding built from slices and concatenations.
  A window that reaches into the padding also covers the edge it copies, so the maximum is the same, and
  the tensor's int8 range is no longer stretched to -inf (a scale near 1e36 turned the whole graph to noise).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from velm_edge.errors import VelmError

WIDENED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}
PLAIN = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


class GraphModelError(VelmError, ValueError):
    """A model.json or its weights that cannot be read: the message names the file and what is wrong."""


@dataclass(frozen=True)
class GraphModel:
    """The imported graph: ``graph_def`` with every weight set, and the signature's tensor names."""
    graph_def: object  # tf.compat.v1.GraphDef
    inputs: dict[str, tuple[int, ...]]  # tensor name ("input_1:0") -> shape
    outputs: dict[str, tuple[int, ...]]
    meta: dict  # the model.json's other top-level keys (format, generatedBy, convertedBy, ...)

    def function(self):
        """The graph as a TensorFlow concrete function of its inputs (in signature order), returning its outputs
        as a dict keyed by output tensor name."""
        import tensorflow as tf

        def imported():
            tf.graph_util.import_graph_def(self.graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        graph = wrapped.graph
        return wrapped.prune([graph.get_tensor_by_name(n) for n in self.inputs],
                             {n: graph.get_tensor_by_name(n) for n in self.outputs})


def _shape(spec: dict) -> tuple[int, ...]:
    return tuple(int(d.get("size", -1)) for d in spec.get("tensorShape", {}).get("dim", []))


def _read_weights(root: Path, manifest: list, where: str) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((root / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape, q = tuple(int(s) for s in w["shape"]), w.get("quantization")
            stored = WIDENED.get(q["dtype"]) if q else PLAIN.get(w["dtype"])
            if stored is None:
                raise GraphModelError(f"{where}: weight {w['name']!r} is stored as "
                                      f"{(q or w)['dtype']!r}, which this reader does not know")
            count = math.prod(shape)
            size = count * np.dtype(stored).itemsize
            if offset + size > len(blob):
                raise GraphModelError(f"{where}: the weights end at byte {len(blob)}, but {w['name']!r} needs "
                                      f"bytes {offset}..{offset + size} (a truncated .bin shard?)")
            value = np.frombuffer(blob, stored, count, offset).reshape(shape)
            offset += size
            if q and q["dtype"] in ("uint8", "uint16"):  # affine: min + scale * q
                value = q["min"] + q["scale"] * value.astype(np.float32)
            weights[w["name"]] = value.astype(np.dtype(w["dtype"]) if w["dtype"] in PLAIN else np.float32)
        if offset != len(blob):
            raise GraphModelError(f"{where}: {len(blob) - offset} bytes of {group['paths']} are not named by "
                                  f"weightsManifest (a different model's shards?)")
    return weights


def load(model_json: str | Path, edgetpu_rewrites: bool = True) -> GraphModel:
    """Read a TF.js graph model (``model.json`` beside its shards) into a GraphDef with its weights set and the
    Edge TPU rewrites made (see the module docstring)."""
    import tensorflow as tf
    from google.protobuf import json_format

    path = Path(model_json)
    try:
        doc = json.loads(path.read_text())
        topology, manifest = doc["modelTopology"], doc["weightsManifest"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GraphModelError(f"{path}: not a TF.js graph model (model.json with modelTopology and "
                              f"weightsManifest): {type(e).__name__}: {e}") from None
    if doc.get("format", "graph-model") != "graph-model":
        raise GraphModelError(f"{path}: format {doc.get('format')!r}; only TF.js graph models are read "
                              f"(a layers model is a Keras model: load it with Keras)")
    graph_def = tf.compat.v1.GraphDef()
    json_format.ParseDict({k: v for k, v in topology.items() if k in ("node", "library", "versions")},
                          graph_def, ignore_unknown_fields=True)
    weights = _read_weights(path.parent, manifest, str(path))
    nodes = {n.name: n for n in graph_def.node}
    for name, value in weights.items():
        node = nodes.get(name)
        if node is None or node.op != "Const":
            raise GraphModelError(f"{path}: weight {name!r} names no Const node of the graph")
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.astype(dtype.as_numpy_dtype), dtype))
    if edgetpu_rewrites:
        _leaky_relu_as_relu_sum(graph_def)
    _replicate_minus_inf_pads(graph_def, nodes)
    _split_v_as_slices(graph_def, nodes)
    signature = doc.get("signature") or {}
    inputs = {n: _shape(s) for n, s in signature.get("inputs", {}).items()}
    outputs = {n: _shape(s) for n, s in signature.get("outputs", {}).items()}
    if not inputs or not outputs:
        raise GraphModelError(f"{path}: no signature with inputs and outputs; name them in model.json")
    meta = {k: v for k, v in doc.items() if k not in ("modelTopology", "weightsManifest", "signature")}
    return GraphModel(graph_def, inputs, outputs, meta)


def _const(graph_def, name: str, value: np.ndarray):
    import tensorflow as tf

    node = graph_def.node.add(name=name, op="Const")
    node.attr["dtype"].type = tf.dtypes.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return node


def _leaky_relu_as_relu_sum(graph_def) -> None:
    """Every LeakyRelu(x) becomes alpha * x + Relu((1 - alpha) * x) under the same name: a MUL, a MUL into which the
    converter fuses the RELU, and an ADD, all on the Edge TPU list, and faster than LEAKY_RELU itself on a CPU
    (NanoDet: 10.5 against 15 ms).  Maximum(x, alpha * x) or Relu(x) + alpha * Minimum(x, 0) would be shorter, but
    int8 MAXIMUM and MINIMUM make their inputs share the output's scale, which clips x itself (NanoDet's scores
    fell by a quarter with the first and were noise with the second); alpha * x + (1 - alpha) * Relu(x), with the
    RELU on x, is as accurate but cost 42 ms (a RELU the converter cannot fuse)."""
    for node in list(graph_def.node):
        if node.op != "LeakyRelu":
            continue
        alpha, x, dtype = node.attr["alpha"].f, node.input[0], node.attr["T"]
        a = _const(graph_def, node.name + "/alpha", np.float32(alpha))
        rest = _const(graph_def, node.name + "/rest", np.float32(1 - alpha))
        straight = graph_def.node.add(name=node.name + "/straight", op="Mul", input=[x, a.name])
        scaled = graph_def.node.add(name=node.name + "/scaled", op="Mul", input=[x, rest.name])
        bent = graph_def.node.add(name=node.name + "/bent", op="Relu", input=[scaled.name])  # a MUL's fused RELU
        for n in (straight, scaled, bent):
            n.attr["T"].CopyFrom(dtype)
        node.op = "AddV2"
        del node.input[:]
        node.input.extend([straight.name, bent.name])
        node.attr.clear()
        node.attr["T"].CopyFrom(dtype)


def _replicate_minus_inf_pads(graph_def, nodes: dict) -> None:
    """A PadV2 whose constant is -inf (a max-pool's padding, from ONNX) becomes replicate padding: for each padded
    axis, the first slice repeated before and the last after, joined by ConcatV2."""
    import tensorflow as tf

    def value_of(name: str) -> np.ndarray:
        return tf.make_ndarray(nodes[name.split(":")[0]].attr["value"].tensor)

    for node in list(graph_def.node):
        if node.op != "PadV2":
            continue
        fill = value_of(node.input[2])
        if not np.all(np.isneginf(fill)):
            continue
        paddings, dtype, x = value_of(node.input[1]), node.attr["T"], node.input[0]
        for axis, (before, after) in enumerate(paddings.tolist()):
            if not before and not after:
                continue
            parts = []
            for side, count in (("first", before), ("last", after)):
                if not count:
                    continue
                begin = np.zeros(len(paddings), np.int32)
                size = np.full(len(paddings), -1, np.int32)
                begin[axis], size[axis] = (0 if side == "first" else -1), 1
                stem = f"{node.name}/{side}{axis}"
                b, s = _const(graph_def, stem + "/begin", begin), _const(graph_def, stem + "/size", size)
                edge = graph_def.node.add(name=stem, op="StridedSlice" if side == "last" else "Slice",
                                          input=[x, b.name, s.name])
                edge.attr["T"].CopyFrom(dtype)
                if side == "last":  # x[..., -1:, ...]: a strided slice from -1 to the end
                    end = np.zeros(len(paddings), np.int32)
                    s.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.ones(len(paddings), np.int32)))
                    e = _const(graph_def, stem + "/end", end)
                    edge.input[:] = [x, b.name, e.name, s.name]
                    edge.attr["Index"].type = tf.int32.as_datatype_enum
                    edge.attr["begin_mask"].i = int(sum(1 << i for i in range(len(paddings)) if i != axis))
                    edge.attr["end_mask"].i = int(sum(1 << i for i in range(len(paddings))))
                else:
                    edge.attr["Index"].type = tf.int32.as_datatype_enum
                parts.append((side, [edge.name] * count))
            ordered = dict(parts).get("first", []) + [x] + dict(parts).get("last", [])
            ax = _const(graph_def, f"{node.name}/axis{axis}", np.int32(axis))
            joined = graph_def.node.add(name=f"{node.name}/replicate{axis}", op="ConcatV2",
                                        input=[*ordered, ax.name])
            joined.attr["T"].CopyFrom(dtype)
            joined.attr["N"].i = len(ordered)
            joined.attr["Tidx"].type = tf.int32.as_datatype_enum
            x = joined.name
        node.op = "Identity"
        del node.input[:]
        node.input.append(x)
        node.attr.clear()
        node.attr["T"].CopyFrom(dtype)


def _split_v_as_slices(graph_def, nodes: dict) -> None:
    """Every SplitV with constant sizes and axis becomes one StridedSlice a part (``x[..., a:b, ...]``, spelled
    without knowing x's rank); its consumers read the slices."""
    import tensorflow as tf

    def value_of(name: str) -> np.ndarray:
        return tf.make_ndarray(nodes[name.split(":")[0]].attr["value"].tensor)

    renamed: dict[str, str] = {}
    for node in list(graph_def.node):
        if node.op != "SplitV":
            continue
        x, sizes, axis = node.input[0], value_of(node.input[1]).tolist(), int(value_of(node.input[2]))
        if -1 in sizes:
            raise GraphModelError(f"SplitV {node.name!r} has an inferred part (-1); only fixed sizes are rewritten")
        # axis >= 0: [:, ..., a:b] (axis whole dims before); axis < 0: [..., a:b, :, ...] (-axis - 1 whole after)
        lead = axis if axis >= 0 else 1  # spec entries before a:b (whole dims, or the ellipsis)
        trail = 0 if axis >= 0 else -axis - 1
        whole = sum(1 << i for i in range(lead)) if axis >= 0 else 0
        whole |= sum(1 << i for i in range(lead + 1, lead + 1 + trail))
        start = 0
        for k, size in enumerate(sizes):
            part = f"{node.name}/part{k}"
            spec = np.zeros(lead + 1 + trail, np.int32)
            begin, end = spec.copy(), spec.copy()
            begin[lead], end[lead] = start, start + size
            consts = [_const(graph_def, f"{part}/{n}", v).name
                      for n, v in (("begin", begin), ("end", end), ("strides", np.ones_like(spec)))]
            sl = graph_def.node.add(name=part, op="StridedSlice", input=[x, *consts])
            sl.attr["T"].CopyFrom(node.attr["T"])
            sl.attr["Index"].type = tf.int32.as_datatype_enum
            sl.attr["begin_mask"].i = sl.attr["end_mask"].i = whole
            sl.attr["ellipsis_mask"].i = 0 if axis >= 0 else 1
            renamed[f"{node.name}:{k}"] = part
            if k == 0:
                renamed[node.name] = part
            start += size
        graph_def.node.remove(node)
    for node in graph_def.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
