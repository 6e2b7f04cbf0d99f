"""Bundle loading trusts nothing: every refusal is a BundleError naming the file, the expectation and the finding.

Mutations recompute the checksums (write_manifest) so the deeper checks are reached.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from velm_edge.runtime.bundle import Bundle, BundleError, write_manifest
from velm_edge.runtime.captioner import Captioner


def manifest(root):
    return json.loads((root / "manifest.json").read_text())


def rewrite(root, m):
    write_manifest(root, m)


def test_the_shipped_bundle_loads_and_passes_every_check(shapes_bundle):
    with Captioner.open(shapes_bundle) as cap:
        assert cap.bundle.precision == "int8"
        assert cap.vision.dtype("image") == "int8" and cap.language.dtype("logits", True) == "int8"


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


def test_missing_manifest_directory_and_version(bundle_copy, tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        Bundle.load(tmp_path / "nothing.velm")
    m = manifest(bundle_copy)
    m["format_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format_version 99"):
        Bundle.load(bundle_copy)
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json: not valid JSON"):
        Bundle.load(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        Bundle.load(bundle_copy)


def test_symlinked_file_is_refused(bundle_copy, tmp_path):
    target = tmp_path / "elsewhere.txt"
    os.replace(bundle_copy / "vocab.txt", target)
    (bundle_copy / "vocab.txt").symlink_to(target)
    with pytest.raises(BundleError, match="vocab.txt: missing or not a regular file"):
        Bundle.load(bundle_copy)


@pytest.mark.parametrize("path, value, message", [
    (("precision",), "int4", r"'precision' must be one of \('int8', 'float32', 'dynamic'\), found 'int4'"),
    (("preprocess", "size"), "80", r"preprocess: 'size' must be an integer in \[16, 2048\], found '80'"),
    (("preprocess", "size"), -3, r"'size' must be an integer in \[16, 2048\], found -3"),
    (("preprocess", "resize"), "zoom", r"'resize' must be one of .*found 'zoom'"),
    (("preprocess", "scale"), 0.0, r"preprocess 'scale' must be a number in \(0, 1\], found 0.0"),
    (("tokens", "end"), 7, r"'tokens' must be \{'pad': 0, 'start': 1, 'end': 2, 'unk': 3\}"),
    (("max_length",), 10**9, r"'max_length' must be an integer in \[2, 1024\]"),
    (("state_size",), True, r"'state_size' must be an integer .* found True"),
    (("embedding_quantization", "scale"), float("nan"), r"scale must be a finite number >= 0, found nan"),
    (("graphs", "language", "outputs"), {"logits": {}}, r"graphs.language.outputs must name \['logits', 'state'\]"),
    (("graphs", "vision", "inputs", "image", "shape"), [1, -80, 80, 3], r"image: shape must be 1-4 positive"),
    (("graphs", "vision", "outputs", "state", "dtype"), "complex64", r"state: dtype must be one of"),
])
def test_manifest_fields_are_type_and_range_checked(bundle_copy, path, value, message):
    m = manifest(bundle_copy)
    node = m
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match=message):
        Bundle.load(bundle_copy)


def test_vocabulary_must_match_the_manifest_and_the_table(bundle_copy):
    vocab = bundle_copy / "vocab.txt"
    vocab.write_text(vocab.read_text() + "extraword\n")
    rewrite(bundle_copy, manifest(bundle_copy))
    with pytest.raises(BundleError, match=r"vocab.txt: 43 tokens, the manifest says 42"):
        Bundle.load(bundle_copy)
    m = manifest(bundle_copy)
    m["vocab_size"] = 43  # now the table is one row short
    m["graphs"]["language"]["outputs"]["logits"]["shape"] = [1, 43]
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match=r"embeddings.npy: shape \(42, 64\), expected \(43, E\)"):
        Bundle.load(bundle_copy)


def test_corrupt_embedding_file_is_refused(bundle_copy):
    (bundle_copy / "embeddings.npy").write_bytes(b"\x93NUMPY garbage")
    rewrite(bundle_copy, manifest(bundle_copy))
    with pytest.raises(BundleError, match="embeddings.npy: not a readable .npy array"):
        Bundle.load(bundle_copy)


def test_graph_shapes_must_match_the_manifest_sizes(bundle_copy):
    m = manifest(bundle_copy)
    m["feature_size"] = 128
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match=r"vision.tflite: feature has shape \(1, 256\), expected \(1, 128\)"):
        Captioner.open(bundle_copy)


def test_graph_quantization_must_match_the_manifest(bundle_copy):
    m = manifest(bundle_copy)
    m["graphs"]["language"]["inputs"]["state"]["zero_point"] += 1
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match=r"language.tflite: state quantization .* differs from the manifest's"):
        Captioner.open(bundle_copy)


def test_graph_dtype_must_match_the_precision(bundle_copy):
    m = manifest(bundle_copy)
    m["precision"] = "float32"
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match=r"vision.tflite: image is int8, expected float32 for a float32 bundle"):
        Captioner.open(bundle_copy)


def test_embedding_table_must_match_the_language_graph_input(bundle_copy):
    m = manifest(bundle_copy)
    m["embedding_quantization"]["scale"] *= 2
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match="embeddings.npy: stored as int8 .* language.tflite's embedding input is"):
        Captioner.open(bundle_copy)
    m["embedding_quantization"]["scale"] /= 2
    np.save(bundle_copy / "embeddings.npy", np.load(bundle_copy / "embeddings.npy").astype(np.float32))
    rewrite(bundle_copy, m)
    with pytest.raises(BundleError, match="embeddings.npy: stored as float32"):
        Captioner.open(bundle_copy)


def test_swapped_graphs_are_refused_by_their_names(bundle_copy):
    v, lang = bundle_copy / "vision.tflite", bundle_copy / "language.tflite"
    data_v, data_l = v.read_bytes(), lang.read_bytes()
    v.write_bytes(data_l)
    lang.write_bytes(data_v)
    rewrite(bundle_copy, manifest(bundle_copy))
    with pytest.raises(BundleError, match=r"vision.tflite: inputs \['embedding', 'feature', 'state'\], "
                                          r"expected \['image'\]"):
        Captioner.open(bundle_copy)


def test_a_file_that_is_not_a_flatbuffer_is_refused(bundle_copy):
    (bundle_copy / "vision.tflite").write_bytes(b"\0" * 4096)
    rewrite(bundle_copy, manifest(bundle_copy))
    with pytest.raises(BundleError, match=r"vision.tflite: not a valid TFLite model"):
        Captioner.open(bundle_copy)


def test_shipped_bundles_by_name_and_the_default_for_each_source(tmp_path):
    from velm_edge.live.sources import SynthSource
    from velm_edge.runtime.bundle import DEFAULT_BUNDLE, SHAPES_BUNDLE, SHIPPED, resolve

    assert set(SHIPPED) == {"photo", "shapes"} and DEFAULT_BUNDLE == SHIPPED["photo"]
    assert resolve("shapes") == SHAPES_BUNDLE and resolve("photo") == DEFAULT_BUNDLE
    assert resolve(None, "synth:?fps=5") == SHAPES_BUNDLE and resolve(None, SynthSource(fps=5)) == SHAPES_BUNDLE
    for source in (None, "0", "/dev/video0", "clip.mp4", "rtsp://host/stream", "picamera2:"):
        assert resolve(None, source) == DEFAULT_BUNDLE
    (tmp_path / "shapes").mkdir()  # a directory of that name wins over the shipped name
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert resolve("shapes") == Path("shapes")
    finally:
        os.chdir(cwd)


def test_a_bundle_recommends_its_decoding(bundle_copy):
    from velm_edge.runtime.bundle import DEFAULT_BUNDLE
    from velm_edge.runtime.decode import DecodeOptions

    photo = Captioner.open()
    assert photo.bundle.root == DEFAULT_BUNDLE
    rec = photo.bundle.manifest["decoding"]
    assert (photo.options.strategy, photo.options.beam_size) == ("beam", rec["beam_size"]) and rec["beam_size"] > 1
    assert Captioner.open(options=DecodeOptions()).options.strategy == "greedy"  # an explicit choice wins
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["decoding"] = {"beam_size": 4, "length_penalty": 0.5}
    write_manifest(bundle_copy, manifest)
    assert Captioner.open(bundle_copy).options == DecodeOptions(beam_size=4, length_penalty=0.5)
    for bad in ({"beam_size": 0, "length_penalty": 0.0}, {"beam_size": 3, "length_penalty": 9.0},
                {"beam_size": 3}, "beam"):
        manifest["decoding"] = bad
        write_manifest(bundle_copy, manifest)
        with pytest.raises(BundleError, match="decoding"):
            Captioner.open(bundle_copy)
