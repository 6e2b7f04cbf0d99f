"""Installation as documented: a wheel that carries the default bundle, installed into an empty venv with the
`litert` extra, captions an image and reports its version."""

import hashlib
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import cv2
import pytest

from velm_edge.runtime.bundle import SHIPPED
from velm_edge.runtime.captioner import Captioner
from velm_edge.synth import scenes

ROOT = Path(__file__).resolve().parents[1]


def _version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@pytest.mark.slow
def test_the_wheel_carries_the_bundle_and_captions_from_an_empty_venv(tmp_path):
    dist, source = tmp_path / "dist", tmp_path / "source"
    # what a clean checkout builds: a stale build/ of an older layout must not leak old packages into the wheel
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "dist", "runs", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", "node_modules"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("velm_edge-*.whl")
    assert wheel.name.startswith(f"velm_edge-{_version()}-py3-none-any")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        assert tops == {"velm_edge", "velm_convert"}  # no generic top-level name such as "convert"
        rooms = {n.split("/")[1] for n in names if n.startswith("velm_edge/") and n.count("/") >= 2}
        assert {"runtime", "live", "sinks", "tools", "testing", "models", "samples", "synth"} <= rooms
        assert not [n for n in names if n.startswith("tests/") or "efficientnet_reference" in n]  # checks, not product
        photos = [n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png", ".csv"))]
        # the only pictures are the public-domain and CC0 samples, and none of them is a Flickr8k or COCO file
        assert sorted(photos) == [f"velm_edge/samples/{n}.jpg" for n in ("astronaut", "cat", "coffee", "rocket")]
        third_party = {line.split()[0] for sums in ROOT.parent.glob("shared/data/*/SHA256SUMS")
                       for line in sums.read_text().splitlines() if line.strip()}
        assert not {hashlib.sha256(z.read(n)).hexdigest() for n in photos} & third_party
        for name, root in SHIPPED.items():  # both shipped bundles, byte for byte
            shipped = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir() if p.is_file()}
            inside = {Path(n).name: hashlib.sha256(z.read(n)).hexdigest() for n in names
                      if n.startswith(f"velm_edge/models/{name}.velm/")}
            assert inside == shipped and {"manifest.json", "vision.tflite", "language.tflite"} <= set(inside), name

    env = tmp_path / "env"
    venv.create(env, with_pip=True, clear=True)  # empty: no system site packages, nothing from this tree
    pip = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[litert]"],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]

    image, _ = scenes.generate(2_000_000_321, scenes.SceneConfig(size=80))
    png = tmp_path / "scene.png"
    cv2.imwrite(str(png), cv2.resize(image, (320, 240)))
    with Captioner.open() as cap:  # the photo bundle, the default for image files
        expected = cap.caption(cv2.imread(str(png))).text

    def run(*args):
        done = subprocess.run([str(env / "bin" / "velm-edge"), *args], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)  # not the source tree, so only the installed package can be imported
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert run("--version").strip() == f"velm-edge {_version()}"
    assert run("caption", str(png)).strip() == f"{png}: {expected}"
    samples = run("caption", "--samples").strip().splitlines()  # the photos ship inside the installed package
    assert len(samples) == 4 and all(str(env) in line for line in samples), samples
    where = subprocess.run([str(env / "bin" / "python"), "-c", "import velm_edge; print(velm_edge.DEFAULT_BUNDLE)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60).stdout.strip()
    assert where.startswith(str(env)) and where.endswith("photo.velm")
