"""A bundle's compiled Edge TPU graphs are run when an Edge TPU delegate is open, and a compiled graph
that lost its serving signature (edgetpu_compiler may drop it) is still wired up by tensor position.

There is no Edge TPU here, so the delegate is simulated at one point: ``backend.make_interpreter`` reports the
compiled graph as running, and runs it on the CPU.  The "compiled" graphs are the plain graphs with their
SignatureDefs removed from the flatbuffer, which is the case the position fallback exists for."""

import dataclasses
import json
import shutil
import struct

import numpy as np
import pytest

from velm_edge.errors import BundleError
from velm_edge.runtime import backend
from velm_edge.runtime.bundle import Bundle, write_manifest
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.graph import Graph
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.synth import scenes
from velm_edge.tools import tflite_model

SIGNATURE_DEFS = 7  # field number of Model.signature_defs in TFLite's schema.fbs


def without_signatures(model: bytes) -> bytes:
    """The same .tflite with Model.signature_defs absent: its vtable slot set to 0 (flatbuffers' "not present")."""
    reader = tflite_model.FlatbufferReader(model)
    root = reader.table(reader.u32(0))
    assert root.vector(SIGNATURE_DEFS) is not None, "no signature_defs field"
    data = bytearray(model)
    struct.pack_into("<H", data, root.vtable + 4 + 2 * SIGNATURE_DEFS, 0)
    return bytes(data)


@pytest.fixture
def tpu_present(monkeypatch):
    """An Edge TPU delegate that "opens": the compiled graph is the one built (and run on the CPU)."""
    real = backend.make_interpreter

    def make_interpreter(model, options=RuntimeOptions(), edgetpu_model=None):
        on_cpu = dataclasses.replace(options, device="cpu")
        if options.device == "cpu" or edgetpu_model is None:
            return real(model, on_cpu)
        interpreter, info = real(edgetpu_model, on_cpu)
        return interpreter, {**info, "device": "edgetpu", "compiled": True}

    monkeypatch.setattr(backend, "make_interpreter", make_interpreter)


def test_the_stripped_graph_really_has_no_signature(shapes_bundle):
    plain = (shapes_bundle / "vision.tflite").read_bytes()
    interpreter, _ = backend.make_interpreter(without_signatures(plain))
    assert interpreter.get_signature_list() == {}
    with pytest.raises(BundleError, match="expected one serving signature"):
        Graph(without_signatures(plain), "stripped.tflite")  # without a plain graph to name the tensors: refused


def test_a_compiled_graph_without_signature_is_wired_by_position(shapes_bundle, tpu_present):
    plain = (shapes_bundle / "language.tflite").read_bytes()
    reference = Graph(plain, "language.tflite")
    compiled = Graph(plain, "language.tflite", RuntimeOptions(device="edgetpu"),
                     edgetpu_model=without_signatures(plain))
    assert compiled.info["compiled"] and compiled.interpreter.get_signature_list() == {}
    assert set(compiled.inputs) == set(reference.inputs) and set(compiled.outputs) == set(reference.outputs)
    for name in reference.inputs:
        assert compiled.shape(name) == reference.shape(name) and compiled.dtype(name) == reference.dtype(name)
        assert compiled.qparams(name) == reference.qparams(name)
    rng = np.random.default_rng(0)
    feed = {name: rng.integers(-128, 128, reference.shape(name)).astype(reference.dtype(name))
            for name in reference.inputs}
    expected, got = reference.run(**feed), compiled.run(**feed)
    assert set(got) == set(expected) and all(np.array_equal(got[k], expected[k]) for k in expected)


def test_captioner_runs_the_bundles_compiled_graphs_on_the_tpu_and_the_plain_ones_on_the_cpu(
        shapes_bundle, tmp_path, tpu_present):
    root = shutil.copytree(shapes_bundle, tmp_path / "tpu.velm")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["edgetpu"] = {}
    for name in ("vision", "language"):
        (root / f"{name}_edgetpu.tflite").write_bytes(without_signatures((root / f"{name}.tflite").read_bytes()))
        manifest["edgetpu"][name] = {"returncode": 0, "file": f"{name}_edgetpu.tflite", "ops": [], "all_mapped": True}
    write_manifest(root, manifest)
    assert set(Bundle.load(root).edgetpu) == {"vision", "language"}

    images = [scenes.generate(3_000_000_000 + i, scenes.SceneConfig(size=80))[0] for i in range(8)]
    with Captioner.open(shapes_bundle) as cpu, Captioner.open(root, RuntimeOptions(device="edgetpu")) as tpu:
        assert [tpu.caption(x).text for x in images] == [cpu.caption(x).text for x in images]
        assert tpu.vision.info["compiled"] and tpu.language.info["compiled"] and tpu.info["device"] == "edgetpu"
    # no delegate: the plain graphs, never the compiled ones
    with Captioner.open(root, RuntimeOptions(device="cpu")) as cpu_only:
        assert not cpu_only.vision.info["compiled"] and not cpu_only.language.info["compiled"]
        assert cpu_only.vision.interpreter.get_signature_list() != {}


def test_a_compiled_graph_that_does_not_match_its_plain_graph_is_refused(shapes_bundle, tpu_present):
    vision = (shapes_bundle / "vision.tflite").read_bytes()
    language = (shapes_bundle / "language.tflite").read_bytes()
    with pytest.raises(BundleError, match="the compiled graph's inputs or outputs differ"):
        Graph(language, "language.tflite", RuntimeOptions(device="edgetpu"), edgetpu_model=without_signatures(vision))


@pytest.mark.parametrize("entry", [{"file": ["vision.tflite"]}, {"file": "missing_edgetpu.tflite"}, "text"])
def test_malformed_edgetpu_entries_in_the_manifest_are_refused(bundle_copy, entry):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["edgetpu"] = {"vision": entry}
    write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError, match="edgetpu"):
        Bundle.load(bundle_copy)
