"""Bundle loading trusts nothing: format, version, sizes and checksums are checked before parsing."""

import json
import shutil

import pytest

from velm_edge.bundle import Bundle, BundleError, write_manifest

pytest.importorskip("tensorflow")  # the tiny bundles are exported by convert


@pytest.fixture
def bundle_copy(tiny_bundles, tmp_path):
    return shutil.copytree(tiny_bundles["int8"], tmp_path / "b.velm")


def test_tampered_file_is_refused_with_its_checksum(bundle_copy):
    path = bundle_copy / "language.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"language.tflite: sha256 [0-9a-f]{64}, the manifest says"):
        Bundle.load(bundle_copy)


def test_truncated_file_is_refused_by_size(bundle_copy):
    path = bundle_copy / "vision.tflite"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"vision.tflite: 100 bytes, the manifest says \d+"):
        Bundle.load(bundle_copy)


def test_wrong_format_version_and_missing_manifest(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["format_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format_version 99"):
        Bundle.load(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        Bundle.load(bundle_copy)


def test_vocabulary_must_match_the_table(bundle_copy):
    vocab = bundle_copy / "vocab.txt"
    vocab.write_text(vocab.read_text() + "extraword\n")
    m = json.loads((bundle_copy / "manifest.json").read_text())
    write_manifest(bundle_copy, m)  # checksums recomputed, so the deeper check is reached
    with pytest.raises(BundleError, match=r"embeddings.npy: shape \(\d+, \d+\), expected"):
        Bundle.load(bundle_copy)


def test_embedding_table_must_match_the_language_graph_input(bundle_copy):
    from velm_edge.captioner import Captioner

    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["embedding_quantization"]["scale"] *= 2
    write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match="embeddings.npy: stored as int8 .* language.tflite's embedding input is"):
        Captioner.open(bundle_copy)
