"""Export: bundle files and manifest, int8 op check, calibration trajectories, parity with the float model."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from velm_convert import calibrate, datasets, opcheck, parity  # noqa: E402
from velm_edge.runtime import preprocess  # noqa: E402
from velm_edge.runtime.bundle import REQUIRED_FILES, Bundle, sha256_bytes  # noqa: E402
from velm_edge.runtime.captioner import Captioner  # noqa: E402
from velm_edge.synth.scenes import SceneConfig  # noqa: E402

pytestmark = pytest.mark.slow


def held_out(velm, n=40):
    return datasets.synthetic(n, datasets.EVAL_SEED, SceneConfig(size=velm.config.image_size), workers=1)


def test_bundle_files_and_manifest_round_trip(tiny_bundles, tiny_run):
    _, velm = tiny_run
    for precision, path in tiny_bundles.items():
        b = Bundle.load(path)
        m = json.loads((path / "manifest.json").read_text())
        assert b.manifest == m and b.precision == precision
        for name in (*REQUIRED_FILES, "op_check.json"):
            data = (path / name).read_bytes()
            assert m["files"][name] == {"sha256": sha256_bytes(data), "bytes": len(data)}
        assert b.vocab.tokens == velm.vocab.tokens
        assert m["tokens"]["start"] == velm.vocab.start_id and m["max_length"] == velm.config.max_length
        assert b.embeddings.shape == (len(velm.vocab), velm.config.embed_dim)
        assert m["graphs"]["language"]["outputs"]["logits"]["shape"] == [1, len(velm.vocab)]
        assert m["graphs"]["vision"]["inputs"]["image"]["shape"] == [1, 64, 64, 3]


def test_int8_bundle_is_full_integer(tiny_bundles, tiny_run):
    _, velm = tiny_run
    path = tiny_bundles["int8"]
    m = Bundle.load(path).manifest
    for name in ("vision", "language"):
        report = opcheck.inspect_graph((path / f"{name}.tflite").read_bytes(), name)
        assert report.float_tensors == [] and report.forbidden == []
        assert set(report.tensor_types) <= {"INT8", "INT32"}
        assert m["op_check"][name]["not_edgetpu"] == []
        for io in ("inputs", "outputs"):
            assert {t["dtype"] for t in m["graphs"][name][io].values()} == {"int8"}
    assert m["op_check"]["language"]["ops"].keys() <= {"FULLY_CONNECTED", "CONCATENATION", "LOGISTIC", "TANH",
                                                        "ADD", "MUL", "SUB", "RESHAPE"}
    # the table is the float embedding quantized with the language graph's embedding-input parameters
    b = Bundle.load(path)
    q = b.embedding_qparams
    lang_in = m["graphs"]["language"]["inputs"]["embedding"]
    assert (q.scale, q.zero_point, q.dtype) == (lang_in["scale"], lang_in["zero_point"], "int8")
    table = np.asarray(velm.model.get_layer("embedding").embeddings)
    assert b.embeddings.dtype == np.int8
    assert np.abs((b.embeddings.astype(np.int32) - q.zero_point) * q.scale - table).max() <= q.scale / 2 + 1e-6


def test_int8_bundle_is_a_fraction_of_float(tiny_bundles):
    sizes = {p: sum(e["bytes"] for e in Bundle.load(path).manifest["files"].values())
             for p, path in tiny_bundles.items()}
    assert sizes["float32"] > 2.5 * sizes["int8"]  # the tiny model's graphs carry proportionally more overhead
    assert sizes["dynamic"] <= 1.01 * sizes["float32"]  # weights under 1024 values stay float in dynamic mode


def test_every_precision_decodes_with_the_device_code(tiny_bundles, tiny_run):
    _, velm = tiny_run
    data = held_out(velm)
    float_caps = velm.caption(preprocess.to_float(data.images))
    for precision, path in tiny_bundles.items():
        with Captioner.open(path) as cap:
            ours = [cap.caption_rgb(img).text for img in data.images]
        agree = np.mean([a == b for a, b in zip(ours, float_caps)])
        assert agree >= {"float32": 0.97, "dynamic": 0.7, "int8": 0.5}[precision], (precision, agree)


def test_parity_report_goes_into_the_manifest(tiny_bundles, tiny_run, tmp_path):
    import shutil

    _, velm = tiny_run
    path = shutil.copytree(tiny_bundles["int8"], tmp_path / "copy.velm")
    result = parity.evaluate(path, held_out(velm), velm, progress=False)
    assert 0 <= result["agreement"]["exact_caption"] <= result["agreement"]["token"] <= 1
    assert result["errors"]["max_abs_error_state0"] < 0.2
    parity.write_report(path, result)
    b = Bundle.load(path)  # checksums were refreshed, report included
    assert b.manifest["metrics"]["agreement"] == result["agreement"]
    assert "report.md" in b.manifest["files"]
    assert "identical captions" in (path / "report.md").read_text()


def test_token_agreement_counts_positions_and_end():
    assert parity.token_agreement([(1, 2, 3)], [(1, 2, 3)], 0) == 1.0
    assert parity.token_agreement([(1, 2)], [(1, 2, 3)], 0) == pytest.approx(2 / 4)  # (1,2,<end>) vs (1,2,3,<end>)


def test_calibration_records_teacher_forced_and_free_running_steps(tiny_run):
    _, velm = tiny_run
    data = held_out(velm, 12)
    traj = calibrate.record(velm, preprocess.to_float(data.images), data.captions)
    v = velm.vocab
    seqs = [v.encode(c[0], velm.config.max_length)[: velm.config.steps] for c in data.captions]
    expected_teacher = sum(t not in (v.pad_id, v.end_id) for s in seqs for t in s)  # <start> w1 .. wn
    assert traj.teacher_forced == expected_teacher
    assert len(data) <= traj.free_running <= len(data) * velm.config.steps
    assert traj.vocab_rows == len(velm.vocab)
    assert len(traj) == traj.teacher_forced + traj.free_running + traj.vocab_rows
    table = np.asarray(velm.model.get_layer("embedding").embeddings)
    np.testing.assert_allclose(traj.embedding[-len(table):], table)
    # states are the model's own: the first teacher-forced rows carry the initial states of the images
    _, states0 = velm.encode_images(preprocess.to_float(data.images))
    np.testing.assert_allclose(traj.state[: len(data)], states0, atol=1e-6)
    samples = list(calibrate.language_samples(traj, max_samples=len(velm.vocab) + 10))
    assert len(samples) == len(velm.vocab) + 10
    assert {k: v.shape for k, v in samples[0].items()} == {
        "embedding": (1, velm.config.embed_dim), "feature": (1, velm.config.feature_dim),
        "state": (1, velm.config.units)}


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch):
    """A stand-in for Coral's edgetpu_compiler on PATH: same flags, same output file, Coral's log format."""
    import os
    import stat

    fake = tmp_path / "bin" / "edgetpu_compiler"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n# usage: edgetpu_compiler -s -o OUTDIR MODEL.tflite\n'
                    'base=$(basename "$4" .tflite)\ncp "$4" "$3/${base}_edgetpu.tflite"\n'
                    'echo "Edge TPU Compiler version 16.0.384591198"\necho\n'
                    'echo "Operator                       Count      Status"\necho\n'
                    'echo "FULLY_CONNECTED                7          Mapped to Edge TPU"\n'
                    'echo "TANH                           1          Mapped to Edge TPU"\n'
                    'echo "LOGISTIC                       2          More than one subgraph is not supported"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    return fake


def test_edgetpu_compiler_on_path_is_run_and_its_op_table_recorded(tiny_bundles, tmp_path, fake_compiler,
                                                                   monkeypatch):
    import shutil

    from velm_convert.export import compile_edgetpu

    root = shutil.copytree(tiny_bundles["int8"], tmp_path / "b.velm")
    result = compile_edgetpu(root)
    assert set(result) == {"vision", "language"}
    assert result["language"]["returncode"] == 0 and "Mapped to Edge TPU" in result["language"]["log"]
    assert result["vision"]["file"] == "vision_edgetpu.tflite" and (root / "vision_edgetpu.tflite").is_file()
    assert result["vision"]["ops"] == [
        {"op": "FULLY_CONNECTED", "count": 7, "status": "Mapped to Edge TPU"},
        {"op": "TANH", "count": 1, "status": "Mapped to Edge TPU"},
        {"op": "LOGISTIC", "count": 2, "status": "More than one subgraph is not supported"}]
    assert result["vision"]["all_mapped"] is False
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert compile_edgetpu(root) is None


def test_export_edgetpu_stores_the_compiled_graphs_and_the_runtime_keeps_them_for_the_tpu(
        tiny_run, tmp_path, fake_compiler, capsys, monkeypatch):
    import json

    from velm_convert import cli
    from velm_edge.runtime import backend
    from velm_edge.runtime.bundle import Bundle
    from velm_edge.runtime.captioner import Captioner
    from velm_edge.runtime.options import RuntimeOptions

    run, _ = tiny_run
    plain, compiled = tmp_path / "plain.velm", tmp_path / "tpu.velm"
    common = ["--calib_images", "16", "--calib_samples", "200", "--parity_images", "0"]
    assert cli.main(["export", str(run / "model.keras"), "--out", str(plain), *common]) == 0
    assert cli.main(["export", str(run / "model.keras"), "--out", str(compiled), "--edgetpu", *common]) == 0
    printed = capsys.readouterr().out
    assert "edgetpu_compiler vision: vision_edgetpu.tflite, 8 of 10 ops on the Edge TPU" in printed
    assert not (plain / "vision_edgetpu.tflite").exists()  # only with --edgetpu, even with the compiler on PATH
    b = Bundle.load(compiled)
    assert set(b.edgetpu) == {"vision", "language"} and b.edgetpu["vision"] == (compiled / "vision.tflite").read_bytes()
    assert {"vision_edgetpu.tflite", "language_edgetpu.tflite"} <= set(b.manifest["files"])  # checksummed
    (compiled / "vision_edgetpu.tflite").write_bytes(b"changed")
    with pytest.raises(ValueError, match="vision_edgetpu.tflite"):
        Bundle.load(compiled)  # a compiled graph is checked like every other file
    _, info = backend.make_interpreter(b.vision, RuntimeOptions(device="cpu"), edgetpu_model=b"not used on a CPU")
    assert info == {"backend": info["backend"], "device": "cpu", "compiled": False}
    with Captioner.open(plain) as cap:
        assert cap.caption(__import__("numpy").zeros((64, 64, 3), "uint8")).text is not None
    assert cli.main(["export", str(run / "model.keras"), "--out", str(tmp_path / "f.velm"), "--edgetpu",
                     "--precision", "float32", *common]) == 1
    assert "--edgetpu needs --precision int8" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # --edgetpu without the compiler: a plain bundle, and why
    assert cli.main(["export", str(run / "model.keras"), "--out", str(tmp_path / "n.velm"), "--edgetpu", *common]) == 0
    assert "edgetpu_compiler is not on PATH: no compiled graphs stored" in capsys.readouterr().out
    assert json.loads((tmp_path / "n.velm" / "manifest.json").read_text())["edgetpu"] is None
