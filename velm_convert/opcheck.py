"""The op check every export runs: which ops and tensor types each graph holds, and whether it may ship.

Reads the .tflite flatbuffer itself (no interpreter, no delegate rewriting).  An int8 export is refused
when a graph holds a float tensor or a forbidden op (GATHER, WHILE, custom or Flex ops); every export
lists the ops that the Edge TPU compiler does not map.  Each finding names the op and the Keras layer it
came from (recovered from the tensor names the converter keeps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from velm_edge.errors import VelmError

# TFLite builtins the Edge TPU compiler maps (coral.ai/docs/edgetpu/models-intro, "Supported operations").
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})
FORBIDDEN_OPS = frozenset({"GATHER", "GATHER_ND", "WHILE", "IF", "CALL_ONCE", "CUSTOM", "EMBEDDING_LOOKUP"})
INT8_TYPES = frozenset({"INT8", "INT32"})  # int32 only for biases and shapes


class OpCheckError(VelmError, ValueError):
    """An int8 graph that must not ship: the message names each offending op and its layer."""


@dataclass
class GraphReport:
    name: str
    ops: dict[str, int] = field(default_factory=dict)  # op name -> count
    tensor_types: dict[str, int] = field(default_factory=dict)  # type -> count
    float_tensors: list[str] = field(default_factory=list)  # "name (FLOAT32) <- OP in layer X"
    forbidden: list[str] = field(default_factory=list)  # "OP in layer X"
    not_edgetpu: list[str] = field(default_factory=list)  # op names the Edge TPU compiler does not map

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def problems(self, precision: str) -> list[str]:
        found = [f"{self.name}: forbidden op {f}" for f in self.forbidden]
        if precision == "int8":
            found += [f"{self.name}: float tensor {t}" for t in self.float_tensors]
        return found


def _enum_names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def layer_of(tensor_name: str) -> str:
    """'velm_step_1/step_hz_1/MatMul' -> 'step_hz' (the Keras layer); other names are returned as they are."""
    parts = tensor_name.split(";")[0].split("/")
    name = parts[1] if len(parts) > 2 else parts[0]
    return re.sub(r"_\d+$", "", name)


def inspect_graph(model: bytes, name: str) -> GraphReport:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    ops_by_code, types = _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType)
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    report = GraphReport(name)
    for g in m.subgraphs:
        producer = {}
        for op in g.operators:
            code = m.operatorCodes[op.opcodeIndex]
            op_name = ops_by_code.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
            if op_name == "CUSTOM" and code.customCode:
                custom = code.customCode.decode(errors="replace")
                op_name = "FLEX" if custom.startswith("Flex") else "CUSTOM"
                op_name = f"{op_name}:{custom}"
            report.ops[op_name] = report.ops.get(op_name, 0) + 1
            out_names = [g.tensors[i].name.decode(errors="replace") for i in op.outputs if i >= 0]
            layer = layer_of(out_names[0]) if out_names else "?"
            for i in op.outputs:
                producer[i] = (op_name, layer)
            base = op_name.split(":")[0]
            if base in FORBIDDEN_OPS or base == "FLEX":
                report.forbidden.append(f"{op_name} in layer {layer}")
            elif base not in EDGETPU_OPS and op_name not in report.not_edgetpu:
                report.not_edgetpu.append(op_name)
        for i, t in enumerate(g.tensors):
            kind = types.get(t.type, str(t.type))
            report.tensor_types[kind] = report.tensor_types.get(kind, 0) + 1
            if kind not in INT8_TYPES:
                op_name, layer = producer.get(i, ("input or constant", layer_of(t.name.decode(errors="replace"))))
                report.float_tensors.append(f"{t.name.decode(errors='replace')} ({kind}) <- {op_name} in layer {layer}")
    return report


def check(graphs: dict[str, bytes], precision: str) -> dict[str, GraphReport]:
    """Inspect every graph; raise OpCheckError listing all problems (forbidden ops; float tensors for int8)."""
    reports = {name: inspect_graph(model, name) for name, model in graphs.items()}
    problems = [p for r in reports.values() for p in r.problems(precision)]
    if problems:
        raise OpCheckError(f"the {precision} export cannot ship: " + "; ".join(problems[:20])
                           + (f"; and {len(problems) - 20} more" if len(problems) > 20 else ""))
    return reports
