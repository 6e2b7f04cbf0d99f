"""The one image reader: EXIF orientation applied everywhere a picture file is read."""

import cv2
import numpy as np
import pytest

from velm_edge.live.sources import open_source
from velm_edge.runtime import image_file


def test_exif_orientation_is_applied(sideways):
    frame = image_file.read_image(sideways)
    assert frame.shape == (96, 64, 3)  # displayed upright: rotated 90 degrees clockwise
    top, bottom = frame[:40].mean(axis=(0, 1)), frame[-40:].mean(axis=(0, 1))
    assert top[2] > 200 and bottom[2] < 50  # the left half is now on top
    raw = cv2.imread(str(sideways), cv2.IMREAD_UNCHANGED)
    assert raw.shape == (64, 96, 3)  # what the device read before: sideways


def test_the_device_sources_read_through_it(sideways):
    source = open_source(str(sideways.parent))
    try:
        frame = source.read()
    finally:
        source.close()
    np.testing.assert_array_equal(frame.image, image_file.read_image(sideways))


def test_sixteen_bit_and_grey_files_keep_their_depth(tmp_path):
    grey16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)
    cv2.imwrite(str(tmp_path / "g.png"), grey16)
    frame = image_file.read_image(tmp_path / "g.png")
    assert frame.dtype == np.uint16 and frame.shape == (32, 32)
    np.testing.assert_array_equal(frame, grey16)


def test_unreadable_files_are_a_value_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not an image file"):
        image_file.read_image(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="cannot read"):
        image_file.read_image(tmp_path / "missing.jpg")
