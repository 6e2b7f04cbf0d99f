"""Runtime fixtures: only numpy, OpenCV and an interpreter package (these tests run without TensorFlow,
under ai-edge-litert with numpy 2 and under tflite-runtime 2.14 with numpy 1.x)."""

import shutil

import pytest

from velm_edge.runtime.bundle import SHAPES_BUNDLE
from velm_edge.synth import scenes


@pytest.fixture(scope="session")
def shapes_bundle():
    """The shipped shapes bundle: it knows the synthetic scenes, so captions can be checked word for word."""
    assert (SHAPES_BUNDLE / "manifest.json").is_file(), f"the shipped bundle is missing at {SHAPES_BUNDLE}"
    return SHAPES_BUNDLE


@pytest.fixture
def bundle_copy(shapes_bundle, tmp_path):
    """A private copy of the shipped shapes bundle to damage."""
    return shutil.copytree(shapes_bundle, tmp_path / "b.velm")


@pytest.fixture(scope="session")
def captioner(shapes_bundle):
    from velm_edge.runtime.captioner import Captioner

    with Captioner.open(shapes_bundle) as cap:
        yield cap


@pytest.fixture(scope="session")
def held_out():
    """40 synthetic scenes at the model's size from seeds no training run uses: [(BGR image, caption)]."""
    return [scenes.generate(2_000_000_000 + i, scenes.SceneConfig(size=80)) for i in range(40)]


@pytest.fixture
def free_port():
    """A TCP port on loopback that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def wait_for_http():
    """wait_for_http(url, accept=...): poll until the URL answers and accept(body) holds (30 s at most)."""
    import time
    import urllib.request

    def wait(url: str, accept=lambda body: True, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if accept(urllib.request.urlopen(url, timeout=1).read()):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} did not become ready within {seconds:g} s")

    return wait


@pytest.fixture
def run_to_jsonl(tmp_path):
    """run_to_jsonl(source, frames, *args): `velm-edge run SOURCE --max_frames N ARGS` in a fresh process, to JSONL;
    the events."""
    import json
    import subprocess
    import sys

    def run(source: str, frames: int, *args: str) -> list[dict]:
        out = tmp_path / "run.jsonl"
        done = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "run", source, "--max_frames", str(frames),
                               "--sink", f"jsonl:{out}", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return [json.loads(line) for line in out.read_text().splitlines()]

    return run
