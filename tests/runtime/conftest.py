"""Runtime fixtures: only numpy, OpenCV and an interpreter package (these tests run without TensorFlow,
under ai-edge-litert with numpy 2 and under tflite-runtime 2.14 with numpy 1.x)."""

import shutil

import pytest

from velm_edge import scenes
from velm_edge.bundle import DEFAULT_BUNDLE


@pytest.fixture(scope="session")
def default_bundle():
    assert (DEFAULT_BUNDLE / "manifest.json").is_file(), f"the shipped bundle is missing at {DEFAULT_BUNDLE}"
    return DEFAULT_BUNDLE


@pytest.fixture
def bundle_copy(default_bundle, tmp_path):
    """A private copy of the shipped bundle to damage."""
    return shutil.copytree(default_bundle, tmp_path / "b.velm")


@pytest.fixture(scope="session")
def captioner(default_bundle):
    from velm_edge.captioner import Captioner

    with Captioner.open(default_bundle) as cap:
        yield cap


@pytest.fixture(scope="session")
def held_out():
    """40 synthetic scenes at the model's size from seeds no training run uses: [(BGR image, caption)]."""
    return [scenes.generate(2_000_000_000 + i, scenes.SceneConfig(size=80)) for i in range(40)]
