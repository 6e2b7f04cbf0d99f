"""Shared fixtures.  The tiny trained model is made once per session (about 20 s on 2 cores)."""

import struct

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small VELM trained on 768 synthetic scenes at 64x64: (output folder, Velm)."""
    pytest.importorskip("keras")
    from velm_convert.config import TrainConfig
    from velm_convert.train import train

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(out=str(out), train_scenes=768, val_scenes=64, image_size=64, epochs=3, batch_size=32,
                      feature_dim=64, embed_dim=16, units=64, learning_rate=3e-3, progress=False, workers=1)
    return out, train(cfg)


@pytest.fixture(scope="session")
def tiny_bundles(tiny_run, tmp_path_factory):
    """The tiny model exported at every precision: {precision: bundle path}, plus the calibration set."""
    from velm_convert import datasets
    from velm_convert.export import export
    from velm_edge.synth.scenes import SceneConfig

    _, velm = tiny_run
    calib = datasets.synthetic(48, datasets.CALIB_SEED, SceneConfig(size=velm.config.image_size), workers=1)
    root = tmp_path_factory.mktemp("bundles")
    return {p: export(velm, root / p / f"tiny-{p}.velm", p, calib, calib_images=48, calib_samples=600,
                      progress=False)  # (the parent folder does not exist yet)
            for p in ("int8", "float32", "dynamic")}


def exif_rotated_jpeg(image: np.ndarray, orientation: int = 6) -> bytes:
    """``image`` as a JPEG whose EXIF says "rotate 90 degrees clockwise to display" (orientation 6), as phones
    store a portrait photo taken with the sensor sideways."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    data = jpeg.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


@pytest.fixture
def sideways(tmp_path):
    """A 64x96 (h x w) picture, red on its left half, stored sideways with EXIF orientation 6."""
    img = np.zeros((64, 96, 3), np.uint8)
    img[:, :48] = (0, 0, 255)  # BGR red on the left
    path = tmp_path / "phone.jpg"
    path.write_bytes(exif_rotated_jpeg(img))
    return path
