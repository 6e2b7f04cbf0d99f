"""The shipped real-world bundle on real photographs: the default for `velm-edge caption`, and its Flickr8k
figures re-measured on the test split through the device code."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from velm_edge.runtime.bundle import DEFAULT_BUNDLE, SHAPES_BUNDLE, read_manifest
from velm_edge.runtime.image_file import read_image

FLICKR8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "flickr8k"
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")  # Debian's opencv-doc (installed by .ci/run)

# what a caption must say to name the subject of each photo
PEOPLE = {"man", "men", "woman", "women", "person", "people", "boy", "boys", "girl", "girls", "player", "players",
          "lady", "guy", "child", "children"}
SUBJECTS = {
    "astronaut": PEOPLE, "grace_hopper": PEOPLE, "camera": PEOPLE, "messi5": PEOPLE, "basketball1": PEOPLE,
    "chelsea": {"cat", "cats", "kitten"},
    "chicky_512": {"bird", "birds", "chicken", "chick", "duck"},
    "motorcycle": {"motorcycle", "motorbike", "bike", "dirt", "motorcyclist", "motocross"},
}


def package_photos(folder: Path) -> dict[str, Path]:
    """Photographs that installed packages ship, written as PNG files: scikit-image's and matplotlib's sample photos
    and, where Debian's opencv-doc is installed, OpenCV's (none of them from Flickr8k)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (a dev dependency) ships the sample photos")
    import matplotlib.cbook

    photos = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "motorcycle": data.stereo_motorcycle()[0],
              "camera": data.camera()}
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["grace_hopper"] = cv2.cvtColor(cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR),
                                              cv2.COLOR_BGR2RGB)
    paths = {}
    for name, rgb in photos.items():
        paths[name] = folder / f"{name}.png"
        cv2.imwrite(str(paths[name]), rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    for name in ("messi5.jpg", "basketball1.png", "chicky_512.png"):
        if (OPENCV_SAMPLES / name).is_file():
            paths[name.rsplit(".", 1)[0]] = OPENCV_SAMPLES / name
    return paths


def test_caption_names_the_subject_of_ordinary_photos_with_no_bundle_given(tmp_path):
    photos = package_photos(tmp_path)
    out = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "caption", "--json", *map(str, photos.values())],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    captions = {Path(r["image"]).stem: r["text"] for r in map(json.loads, out.stdout.splitlines())}
    named = {name: bool(set(captions[name].split()) & SUBJECTS[name]) for name in photos}
    report = "\n".join(f"{'ok ' if named[n] else 'MISS'} {n}: {captions[n]}" for n in photos)
    print(report)
    assert sum(named.values()) > len(photos) / 2, report  # most of them
    people = [n for n in photos if SUBJECTS[n] is PEOPLE]
    assert all(named[n] for n in people), report  # Flickr8k is mostly people (and dogs): every person is named


def test_both_manifests_say_what_they_were_trained_on():
    photo, shapes = read_manifest(DEFAULT_BUNDLE), read_manifest(SHAPES_BUNDLE)
    assert "Flickr8k" in photo["training"]["data"] and "research only" in photo["training"]["terms"]
    assert "Apache-2.0" in photo["training"]["pretrained_weights"]["licence"]
    assert "EfficientNet-Lite0" in photo["training"]["pretrained_weights"]["what"]
    assert "MS-COCO" in photo["training"]["text_captions"] and "CC BY 4.0" in photo["training"]["text_captions"]
    assert "synthetic scenes" in shapes["training"]["data"]
    files = set(photo["files"])
    assert not any(f.endswith((".jpg", ".csv")) for f in files)  # no Flickr8k photo or caption inside


@pytest.mark.skipif(not FLICKR8K.is_dir(), reason=f"the Flickr8k copy is not at {FLICKR8K} (research use only; "
                                                  "it is never part of the repository)")
def test_the_shipped_figures_are_what_the_device_code_measures_on_the_test_split():
    """Re-measure the shipped int8 bundle on the 1,000 Flickr8k test photos with the device's decode code: with the
    parity check's decoding (beam search, no grounding: like for like with the float model) the figures in the
    manifest are reproduced.  The recommended decoding (grounded, no repeated word pair) gives what the README
    publishes, 18.3 BLEU-4 and 0.457 CIDEr-D: its second decoding from the tags and detections alone costs
    Flickr8k 1.2 BLEU-4 for the everyday photos' gain (18.6 and 0.46 were asked for and missed: see
    docs/engineering.md); without it, 19.5 and 0.477.  Each photo is captioned whole, as the parity check and a
    camera do: the detector sees the full photo."""
    pytest.importorskip("velm_convert.datasets")
    from velm_convert import datasets, metrics
    from velm_edge.runtime.captioner import Captioner

    manifest = read_manifest(DEFAULT_BUNDLE)
    shipped = manifest["metrics"]
    fs = datasets.file_set(datasets.flickr8k_layout(FLICKR8K), "test")
    assert len(fs) == 1000 and all(len(c) == 5 for c in fs.captions)
    pre = manifest["preprocess"]
    assert pre["resize"] == "stretch"
    with Captioner.open() as cap:
        assert cap.options.beam_size == manifest["decoding"]["beam_size"] == shipped["beam_size"]
        assert cap.options.ground > 0 and cap.options.no_repeat_ngram == 2 and cap.words is not None
        assert cap.takes_detections
        parity = cap.options.override(ground=0.0, no_repeat_ngram=0)
        texts = {"parity": [], "recommended": [], "image_only": []}
        for file in fs.files:
            encoded = cap.encode_frame(read_image(file))  # once: the detector and the vision graph
            for name, options in (("parity", parity), ("recommended", cap.options),
                                  ("image_only", cap.options.override(ground=0.0))):
                texts[name].append(cap.decode_encoded(encoded, options).text)
    like_parity, recommended, image_only = (metrics.score(texts[k], fs.captions) for k in texts)
    assert like_parity["bleu4"] == pytest.approx(shipped["bundle"]["bleu4"], abs=0.002)
    assert like_parity["cider"] == pytest.approx(shipped["bundle"]["cider"], abs=0.01)
    assert recommended["bleu4"] >= 0.181 and recommended["cider"] >= 0.45, recommended
    assert image_only["bleu4"] >= 0.193 and image_only["cider"] >= 0.47, image_only
    assert shipped["float"]["bleu4"] >= 0.160
    assert shipped["bundle"]["bleu4"] >= shipped["float"]["bleu4"] - 0.005  # int8 within 0.5 BLEU-4 points
    assert shipped["bundle"]["cider"] >= 0.97 * shipped["float"]["cider"]  # and within 3% CIDEr-D
