"""Shared fixtures.  The tiny trained model is made once per session (about 20 s on 2 cores)."""

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small VELM trained on 768 synthetic scenes at 64x64: (output folder, Velm)."""
    pytest.importorskip("keras")
    from convert.config import TrainConfig
    from convert.train import train

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(out=str(out), train_scenes=768, val_scenes=64, image_size=64, epochs=3, batch_size=32,
                      feature_dim=64, embed_dim=16, units=64, learning_rate=3e-3, progress=False, workers=1)
    return out, train(cfg)


@pytest.fixture(scope="session")
def tiny_bundles(tiny_run, tmp_path_factory):
    """The tiny model exported at every precision: {precision: bundle path}, plus the calibration set."""
    from convert import datasets
    from convert.export import export
    from velm_edge.scenes import SceneConfig

    _, velm = tiny_run
    calib = datasets.synthetic(48, datasets.CALIB_SEED, SceneConfig(size=velm.config.image_size), workers=1)
    root = tmp_path_factory.mktemp("bundles")
    return {p: export(velm, root / p / f"tiny-{p}.velm", p, calib, calib_images=48, calib_samples=600,
                      progress=False)  # (the parent folder does not exist yet)
            for p in ("int8", "float32", "dynamic")}
