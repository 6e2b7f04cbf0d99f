"""Frames of every accepted kind reach the model as the same RGB image; everything else is a clear ValueError."""

import numpy as np
import pytest

from velm_edge.runtime import preprocess
from velm_edge.runtime.quant import QParams, quantize


@pytest.fixture
def bgr():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_bgr_becomes_rgb_at_the_model_size(bgr):
    out = preprocess.prepare(bgr, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    same = preprocess.prepare(bgr[:, :, ::-1].copy(), 32, rgb=True)
    np.testing.assert_array_equal(out, same)


def test_grey_bgra_rgba_uint16_and_float_frames_agree_with_bgr(bgr):
    ref = preprocess.prepare(bgr, 32)
    alpha = np.full(bgr.shape[:2] + (1,), 255, np.uint8)
    np.testing.assert_array_equal(preprocess.prepare(np.concatenate([bgr, alpha], 2), 32), ref)
    rgba = np.concatenate([bgr[:, :, ::-1], alpha], 2)
    np.testing.assert_array_equal(preprocess.prepare(rgba, 32, rgb=True), ref)
    np.testing.assert_array_equal(preprocess.prepare(bgr.astype(np.uint16) * 257, 32), ref)
    np.testing.assert_array_equal(preprocess.prepare(bgr.astype(np.float32) / 255, 32), ref)
    np.testing.assert_array_equal(preprocess.prepare(bgr.astype(np.float64) / 255, 32), ref)
    grey = bgr[:, :, 1]
    out = preprocess.prepare(grey, 32)
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()
    np.testing.assert_array_equal(preprocess.prepare(grey[:, :, None], 32), out)


def test_non_contiguous_views_are_accepted(bgr):
    view = bgr[::2, ::2]
    np.testing.assert_array_equal(preprocess.prepare(view, 16), preprocess.prepare(view.copy(), 16))


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 10, 3), np.uint8), r"non-empty image, got shape \(0, 10, 3\)"),
    (np.zeros((4, 4, 2), np.uint8), r"shape \(H, W\), \(H, W, 1\), \(H, W, 3\) or \(H, W, 4\), got \(4, 4, 2\)"),
    (np.zeros((2, 4, 4, 3), np.uint8), r"got \(2, 4, 4, 3\)"),
    (np.zeros((4, 4, 3), np.int32), r"unsupported image dtype int32"),
    (np.zeros((4, 4, 3), bool), r"unsupported image dtype bool"),
    (np.full((4, 4, 3), np.nan, np.float32), r"float image contains NaN or inf"),
    (np.full((4, 4, 3), 200.0, np.float32), r"float images must hold values in \[0, 1\], found \[200, 200\]"),
    ([[1, 2], [3, 4]], r"expected an image as a numpy array, got list"),
])
def test_bad_frames_are_refused_clearly(frame, message):
    with pytest.raises(ValueError, match=message):
        preprocess.prepare(frame, 32)


def test_resize_modes():
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # a white centre square in a black wide frame
    crop = preprocess.resize(wide, 10, "crop")
    assert (crop == 255).all()  # the centre crop is all square
    box = preprocess.resize(wide, 10, "letterbox")
    assert (box[0] == preprocess.LETTERBOX_GREY).all() and (box[-1] == preprocess.LETTERBOX_GREY).all()
    assert box[5, 5].tolist() == [255, 255, 255]
    assert preprocess.resize(wide, 10, "stretch").shape == (10, 10, 3)
    with pytest.raises(ValueError, match="resize mode must be one of"):
        preprocess.resize(wide, 10, "zoom")


def test_int8_input_fast_path_equals_the_generic_quantization():
    rgb = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    q = QParams(1 / 255, -128, "int8")
    fast = preprocess.to_input(rgb, q)
    np.testing.assert_array_equal(fast, quantize(rgb[None].astype(np.float32) / 255, q))
    assert fast.dtype == np.int8 and fast.shape == (1, 16, 16, 3)
    other = QParams(0.01, 3, "int8")  # any other parameters take the generic path
    np.testing.assert_array_equal(preprocess.to_input(rgb, other), quantize(rgb[None] / 255.0, other))
    f = preprocess.to_input(rgb, QParams(0.0, 0, "float32"))
    assert f.dtype == np.float32 and np.isclose(f.max(), 1.0)
