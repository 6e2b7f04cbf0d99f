"""The op check refuses int8 graphs with forbidden ops or float tensors, naming the op and the layer."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from velm_convert import opcheck  # noqa: E402

pytestmark = pytest.mark.slow


def convert(model, inputs, int8_io=True):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in inputs)
    if int8_io:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def test_planted_gather_is_refused_with_its_layer():
    tokens = keras.Input((1,), batch_size=1, dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 8, name="word_table")(tokens)
    model = keras.Model(tokens, keras.layers.Dense(4, name="head")(keras.layers.Flatten()(x)))
    graph = convert(model, [np.array([[i]], np.int32) for i in range(20)], int8_io=False)
    report = opcheck.inspect_graph(graph, "planted")
    assert any(f.startswith("GATHER in layer word_table") for f in report.forbidden), report.forbidden
    with pytest.raises(opcheck.OpCheckError, match="forbidden op GATHER in layer word_table"):
        opcheck.check({"planted": graph}, "float32")


def test_planted_float_op_is_refused_for_int8_only():
    x = keras.Input((8,), batch_size=1, name="x")
    model = keras.Model(x, keras.layers.Dense(4, activation="softplus", name="soft_head")(x))
    data = [np.random.default_rng(i).normal(size=(1, 8)).astype(np.float32) for i in range(8)]
    graph = convert(model, data, int8_io=False)  # float I/O, and softplus has no int8 kernel
    report = opcheck.inspect_graph(graph, "planted")
    assert report.float_tensors and "FLOAT32" in report.tensor_types
    with pytest.raises(opcheck.OpCheckError, match=r"float tensor .*\(FLOAT32\)"):
        opcheck.check({"planted": graph}, "int8")
    assert opcheck.check({"planted": graph}, "dynamic")["planted"].float_tensors  # allowed, still reported


def test_layer_names_come_from_tensor_names():
    assert opcheck.layer_of("velm_step_1/step_hz_1/MatMul") == "step_hz"
    assert opcheck.layer_of("serving_default_image:0") == "serving_default_image:0"


def test_the_hand_written_op_and_type_tables_follow_the_tflite_schema():
    """velm_edge.tools.tflite_model reads .tflite files without TensorFlow from its own tables: pin them to the
    schema TensorFlow ships, and its op counts to the op check's on the shipped bundles' graphs."""
    from tensorflow.lite.python import schema_py_generated as schema

    from velm_edge.runtime.bundle import SHIPPED
    from velm_edge.tools import tflite_model

    for code, name in tflite_model.OP_NAMES.items():
        assert getattr(schema.BuiltinOperator, name) == code, name
    for code, name in tflite_model.TYPE_NAMES.items():
        assert getattr(schema.TensorType, name.upper()) == code, name
        bits = int("".join(c for c in name if c.isdigit()) or 8)  # bool: one byte
        assert tflite_model.TYPE_BYTES[code] == max(1, bits // 8), name
    for bundle in SHIPPED.values():
        for graph in ("vision", "language"):
            data = (bundle / f"{graph}.tflite").read_bytes()
            counts: dict[str, int] = {}
            for op in tflite_model.read(data).operators:
                counts[op.op] = counts.get(op.op, 0) + 1
            assert counts == opcheck.inspect_graph(data, graph).ops, (bundle.name, graph)
