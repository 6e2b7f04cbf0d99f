"""Any array as a frame (dtype, shape, channels, NaN/inf, size, zero-sized, byte order, strides) gives a
caption or a ValueError that says what was wrong; never a crash, another exception or a silent wrong cast.
Together these tests generate more than 10,000 frames."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from velm_edge.runtime import preprocess

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
DTYPES = st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4),
                   st.sampled_from([np.dtype(">u2"), np.dtype(">f4"), np.dtype("<f2"), np.dtype(object)]))
SHAPES = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=12)
IMAGE_SHAPES = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 3), (*hw, 4)]))


def _any_frame(dtype_strategy, shape_strategy):
    return st.builds(lambda a, order: a[::-1] if order and a.ndim else a,  # also reversed (negative strides)
                     hnp.arrays(dtype_strategy, shape_strategy, elements=None), st.booleans())


ANY_FRAME = _any_frame(DTYPES, SHAPES)
IMAGE_LIKE = _any_frame(st.sampled_from([np.dtype(t) for t in ("u1", "u2", ">u2", "f2", "f4", "f8", "i1", "i4",
                                                                "bool")]), IMAGE_SHAPES)


def _accepted(frame) -> bool:
    """What the module table promises to accept, decided independently of the code under test."""
    if not isinstance(frame, np.ndarray) or frame.size == 0 or frame.ndim not in (2, 3):
        return False
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        return False
    kind = frame.dtype
    if kind.kind == "u" and kind.itemsize in (1, 2):
        return True
    if kind.kind == "f":
        values = frame.astype(np.float64)
        return bool(np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1)
    return False


def _expected_uint8(frame) -> np.ndarray:
    native = frame.astype(frame.dtype.newbyteorder("="))
    if native.dtype == np.uint8:
        return native
    if native.dtype == np.uint16:
        return (native // 256).astype(np.uint8)
    return np.floor(native.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)


@settings(max_examples=4000, **SETTINGS)
@given(ANY_FRAME, st.booleans())
def test_any_array_is_prepared_or_refused_with_a_value_error(frame, rgb):
    try:
        out = preprocess.prepare(frame, 32, "stretch", rgb=rgb)
    except ValueError as e:
        assert not _accepted(frame), f"refused an acceptable frame {frame.dtype} {frame.shape}: {e}"
        assert str(e)
        return
    assert _accepted(frame), f"accepted {frame.dtype} {frame.shape}"
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


@settings(max_examples=4000, **SETTINGS)
@given(IMAGE_LIKE)
def test_accepted_dtypes_convert_exactly_as_documented(frame):
    """No silent wrong cast: uint16 keeps its top byte, floats in [0, 1] scale to 0-255, everything else refused."""
    if not _accepted(frame):
        with pytest.raises(ValueError):
            preprocess.to_uint8(frame)
        return
    got = preprocess.to_uint8(frame)
    assert got.dtype == np.uint8 and got.shape == frame.shape
    assert np.array_equal(got, _expected_uint8(frame))


@settings(max_examples=2500, **SETTINGS)
@given(st.one_of(ANY_FRAME, IMAGE_LIKE))
def test_the_captioner_gives_a_caption_or_a_value_error_for_any_array(captioner, frame):
    try:
        caption = captioner.caption(frame)
    except ValueError as e:
        assert not _accepted(frame) and str(e)
        return
    assert _accepted(frame) and isinstance(caption.text, str) and caption.tokens is not None


def test_huge_and_non_array_frames_are_refused_without_touching_opencv():
    with pytest.raises(ValueError, match="at most 16384"):
        preprocess.prepare(np.zeros((1, 40000, 3), np.uint8), 32)
    for thing in (None, [[1, 2], [3, 4]], "frame.png", 3.0):
        with pytest.raises(ValueError, match="numpy array"):
            preprocess.prepare(thing, 32)
