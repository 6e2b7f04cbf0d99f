"""Knowing when there is nothing to say: a confidence in every caption, low for generated blank, dark, noise
and featureless frames, high for the sample photos, and --min-confidence acting on it."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from velm_edge import samples
from velm_edge.live import pipeline
from velm_edge.live.options import LiveOptions
from velm_edge.live.sources import open_source
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.confidence import image_signal, of_caption
from velm_edge.runtime.image_file import read_image
from velm_edge.tools import cli

RNG = np.random.default_rng(7)
PHOTOS = [read_image(p) for p in samples.paths()]


def nothing_frames() -> dict[str, np.ndarray]:
    """Frames with no picture in them, as a camera gives them: black, flat grey, too dark, sensor noise, and
    a photo blurred to nothing."""
    frames = {f"flat {v}": np.full((240, 320, 3), v, np.uint8) for v in (0, 128, 255)}
    frames["lens cap (dark photo)"] = (PHOTOS[0] * 0.03).astype(np.uint8)
    frames["uniform noise"] = RNG.integers(0, 256, (240, 320, 3)).astype(np.uint8)
    frames["grey sensor noise"] = np.clip(60 + RNG.normal(0, 12, (240, 320, 3)), 0, 255).astype(np.uint8)
    frames["photo blurred to nothing"] = cv2.GaussianBlur(PHOTOS[1], (0, 0), 80)
    return frames


@pytest.fixture(scope="module")
def photo():
    with Captioner.open("photo") as cap:
        yield cap


def test_the_samples_ship_with_the_package():
    assert {p.stem for p in samples.paths()} == {"astronaut", "cat", "coffee", "rocket"}
    assert all(f is not None and f.shape[2] == 3 for f in PHOTOS)


@pytest.mark.parametrize("name", sorted(nothing_frames()))
def test_frames_with_nothing_in_them_get_a_low_confidence(photo, name):
    frame = nothing_frames()[name]
    caption = photo.caption(frame)
    assert caption.text  # the model still says something...
    assert caption.confidence < 0.2, (name, caption.text, caption.confidence)  # ...and knows it means nothing


SAYABLE = {"astronaut", "cat", "coffee"}  # photos whose subject the model has words for (a rocket pad: none)


def test_photos_get_a_high_confidence(photo):
    for path, frame in zip(samples.paths(), PHOTOS):
        caption = photo.caption(frame)
        if path.stem in SAYABLE:
            assert caption.confidence >= 0.5, (path.name, caption.text, caption.confidence)
        assert image_signal(cv2.resize(frame, (224, 224))) == 1.0


def test_confidence_is_the_lower_of_the_models_probability_and_the_picture():
    assert of_caption(np.log(0.5) * 6, 5) == 1.0  # a likely caption of a picture
    assert of_caption(np.log(0.2) * 6, 5) == pytest.approx(0.5)  # an unlikely one: half
    assert of_caption(np.log(0.5) * 6, 5, signal=0.1) == 0.1  # a likely caption of nothing
    assert of_caption(np.log(0.1) * 6, 5, support=0.9) == 0.9  # an unlikely one the classifier vouches for
    assert of_caption(np.log(0.1) * 6, 5, signal=0.2, support=0.9) == 0.2  # ...but never above the picture


def test_a_live_run_with_min_confidence_announces_only_the_photos(photo, tmp_path):
    photos = [f for p, f in zip(samples.paths(), PHOTOS) if p.stem in SAYABLE]
    for i, frame in enumerate([*nothing_frames().values(), *photos]):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), frame)
    every = list(pipeline.captions(open_source(str(tmp_path)), photo, LiveOptions()))
    kept = list(pipeline.captions(open_source(str(tmp_path)), photo, LiveOptions(min_confidence=0.5)))
    assert len(every) == len(nothing_frames()) + len(photos)
    assert [Path(e.image).name for e in kept] == [f"{i:02d}.png" for i in range(len(nothing_frames()), len(every))]
    assert all(e.to_json()["confidence"] >= 0.5 for e in kept)


def test_caption_says_nothing_recognisable_under_min_confidence(tmp_path, capsys):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((120, 160, 3), 128, np.uint8))
    assert cli.main(["caption", str(grey), "--samples", "--min-confidence", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(PHOTOS)
    assert lines[0].startswith(f"{grey}: (nothing recognisable: ") and "confidence 0.00" in lines[0]
    assert not any("nothing recognisable" in line for line in lines[1:] if Path(line.split(":")[0]).stem in SAYABLE)
    assert cli.main(["caption", str(grey), "--json", "--min-confidence", "0.5"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["recognised"] is False and row["confidence"] < 0.5
