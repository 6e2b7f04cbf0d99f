"""Who and what is in the frame: the detector graph's decoding (boxes from distributions, NMS, letterbox),
its options, and the shipped photo bundle's detector on real photographs."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from velm_edge import samples
from velm_edge.errors import BundleError, OptionError
from velm_edge.runtime import detect
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.detect import Decoding, DetectOptions, Letterbox, decode, letterbox, nms
from velm_edge.runtime.grounding import DetectedWords
from velm_edge.runtime.image_file import read_image
from velm_edge.tools import cli

PHOTOS = {p.stem: read_image(p) for p in samples.paths()}
SMALL = Decoding(labels=("person", "dog"), size=64, color_order="BGR", strides=(8, 16, 32), reg_max=4,
                 center_offset=0.5, min_score=0.4, iou=0.6)


@pytest.fixture(scope="module")
def photo():
    with Captioner.open("photo") as cap:
        yield cap


@pytest.fixture(scope="module")
def decode_time_only(tmp_path_factory):
    """The shapes bundle with the photo bundle's detector added: a detector whose objects the decoder was never
    trained on (grounding at decode time only), as bundles made before the decoder took them."""
    import shutil

    from velm_edge.runtime.bundle import DEFAULT_BUNDLE, SHAPES_BUNDLE, read_manifest, write_manifest

    root = tmp_path_factory.mktemp("bundles") / "shapes-detecting.velm"
    shutil.copytree(SHAPES_BUNDLE, root)
    shutil.copy(DEFAULT_BUNDLE / "detector.tflite", root / "detector.tflite")
    photo, manifest = read_manifest(DEFAULT_BUNDLE), read_manifest(root)
    manifest["detector"] = {**photo["detector"], "words": {}}
    manifest["graphs"]["detector"] = photo["graphs"]["detector"]
    write_manifest(root, manifest)
    return root


def one_hot(distances: list[int], bins: int) -> np.ndarray:
    """Box distribution logits that put (nearly) all probability on the given bins (left, top, right, bottom)."""
    out = np.full((4, bins), -30.0, np.float32)
    out[np.arange(4), distances] = 30.0
    return out.ravel()


def test_a_box_is_the_anchor_point_plus_its_expected_distances_times_the_stride():
    centers, strides = SMALL.anchors
    assert len(centers) == SMALL.points == 8 * 8 + 4 * 4 + 2 * 2
    point = 8 * 8 + 4 * 1 + 2  # stride 16, row 1, column 2: centre (2.5 * 16, 1.5 * 16) = (40, 24)
    assert tuple(centers[point]) == (40.0, 24.0) and strides[point] == 16
    scores = np.zeros((SMALL.points, 2), np.float32)
    scores[point, 1] = 0.9
    dists = np.zeros((SMALL.points, 4 * 5), np.float32)
    dists[point] = one_hot([1, 0, 2, 1], 5)
    boxes, conf, cls = decode(scores, dists, np.arange(SMALL.points), SMALL, 0.4)
    assert cls.tolist() == [1] and conf.tolist() == pytest.approx([0.9])
    assert boxes[0] == pytest.approx([40 - 16, 24 - 0, 40 + 32, 24 + 16], abs=1e-3)
    none = decode(scores, dists, np.arange(SMALL.points), SMALL, 0.95)
    assert len(none[0]) == 0


def test_an_expected_distance_between_bins_is_the_mean_of_its_distribution():
    scores = np.zeros((1, 2), np.float32)
    scores[0, 0] = 0.5
    logits = np.full((4, 5), -30.0, np.float32)
    logits[:, 1] = logits[:, 2] = 0.0  # half on 1, half on 2: 1.5 strides on every side
    boxes, _, _ = decode(scores, logits.reshape(1, -1), np.array([0]), SMALL, 0.4)
    assert boxes[0] == pytest.approx([4 - 12, 4 - 12, 4 + 12, 4 + 12], abs=1e-3)


def test_nms_keeps_the_best_of_overlapping_boxes_and_boxes_of_other_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.8, 0.7], np.float32), 0.6) == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.8, 0.7], np.float32), 0.95) == [1, 2, 3, 0]
    scores = np.zeros((SMALL.points, 2), np.float32)
    scores[0] = [0.9, 0.8]  # one point, two classes, the same box: both kept (NMS is per class)
    dists = np.tile(one_hot([1, 1, 1, 1], 5), (SMALL.points, 1))
    _, conf, cls = decode(scores, dists, np.arange(SMALL.points), SMALL, 0.4)
    assert cls.tolist() == [0, 1] and conf.tolist() == pytest.approx([0.9, 0.8])


def test_letterbox_keeps_the_aspect_ratio_and_maps_boxes_back_to_the_frame():
    frame = np.zeros((100, 400, 3), np.uint8)
    frame[:, 200:] = 255
    square, where = letterbox(frame, 64)
    assert square.shape == (64, 64, 3) and where.scale == pytest.approx(0.16) and where.offset == (0, 24)
    assert square[0].max() == 0 and square[32, 40:].min() == 255  # bars above, the white half on the right
    back = where.to_frame(np.array([[32, 24, 64, 40], [-5, -5, 80, 80]], np.float32))
    assert back.tolist() == [[200, 0, 400, 100], [0, 0, 400, 100]]  # inside the frame, clipped


def test_options_check_their_values_and_split_class_lists():
    assert DetectOptions(classes="person, dog").classes == ("person", "dog")
    assert DetectOptions(classes=("person,car", "dog")).classes == ("person", "car", "dog")
    for bad in ({"min_score": 1.5}, {"min_score": True}, {"max_detections": 0}, {"max_detections": 101}):
        with pytest.raises(OptionError):
            DetectOptions(**bad)
    with pytest.raises(BundleError, match="detector.iou"):
        Decoding.from_manifest({**dataclasses.asdict(SMALL), "labels": ["a"], "strides": [8], "iou": 0.0}, "m.json")
    good = {**dataclasses.asdict(SMALL), "labels": ["a"], "strides": [8]}
    assert Decoding.from_manifest(good, "m.json").points == 64


def test_the_photo_bundle_sees_the_astronaut_and_the_cat_and_nobody_at_the_rocket_pad(photo):
    found = {name: photo.detect(frame) for name, frame in PHOTOS.items()}
    assert found["astronaut"][0].label == "person" and found["astronaut"][0].score >= 0.5
    assert found["cat"][0].label == "cat"
    assert not any(d.label == "person" for d in found["rocket"] + found["cat"] + found["coffee"])
    for name, ds in found.items():
        h, w = PHOTOS[name].shape[:2]
        for d in ds:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (name, d)
        assert [d.score for d in ds] == sorted((d.score for d in ds), reverse=True)
    person = found["astronaut"][0].box  # she fills most of the photo's left and middle
    assert (person[2] - person[0]) * (person[3] - person[1]) > 0.4 * w * h


def test_a_mirrored_photo_gives_mirrored_boxes(photo):
    frame = PHOTOS["astronaut"]
    w = frame.shape[1]
    a, b = photo.detect(frame)[0], photo.detect(np.ascontiguousarray(frame[:, ::-1]))[0]
    assert a.label == b.label == "person"
    assert abs(a.score - b.score) < 0.1
    assert np.abs(np.array([w - b.box[2], b.box[1], w - b.box[0], b.box[3]]) - a.box).max() <= 0.05 * w


def test_options_filter_classes_scores_and_counts(photo):
    frame = PHOTOS["astronaut"]
    everything = photo.detect(frame, DetectOptions(min_score=0.05, max_detections=100))
    assert len(everything) > 1 and min(d.score for d in everything) >= 0.05
    assert photo.detect(frame, DetectOptions(min_score=0.05, max_detections=2)) == everything[:2]
    people = photo.detect(frame, DetectOptions(min_score=0.05, classes=("person",)))
    assert people and {d.label for d in people} == {"person"}
    with pytest.raises(OptionError, match="not among the detector's labels"):
        photo.detect(frame, DetectOptions(classes=("unicorn",)))


def test_captions_carry_the_detections_and_are_grounded_in_them(photo):
    astronaut = photo.caption(PHOTOS["astronaut"])
    assert astronaut.detections == photo.detect(PHOTOS["astronaut"])
    assert astronaut.to_json()["detections"][0]["label"] == "person"
    assert "detect" in astronaut.timings_ms
    rocket = photo.caption(PHOTOS["rocket"])
    words = DetectedWords(photo.bundle.manifest["detector"], photo.vocab, "m")
    assert not set(rocket.tokens) & set(words.ids["person"].tolist())  # nobody is there, so nobody is named
    off = photo.caption(PHOTOS["rocket"], photo.options.override(ground=0.0))
    assert off.detections == rocket.detections  # ground 0: the same objects, the decoder's own words


def test_detected_words_ban_people_nobody_sees_and_raise_what_is_seen(photo):
    words = DetectedWords(photo.bundle.manifest["detector"], photo.vocab, "m")
    person = set(words.ids["person"].tolist())
    assert {photo.vocab.id(w) for w in ("man", "woman", "people", "boy")} <= person
    banned, boost, surest = words.apply((), None)
    assert set(banned.tolist()) == person and boost is None and surest.size == 0
    seen = (detect.Detection("dog", 0.8, (0, 0, 5, 5)), detect.Detection("person", 0.6, (0, 0, 5, 5)))
    banned, boost, surest = words.apply(seen, None)
    assert banned.size == 0 and set(surest.tolist()) == set(words.ids["dog"].tolist())  # the surest must be named
    unsure = (detect.Detection("dog", words.nudge.surest - 0.01, (0, 0, 5, 5)),)
    assert words.apply(unsure, None)[2].size == 0  # ... only when the detector is sure enough of it
    assert boost[photo.vocab.id("dog")] == pytest.approx(words.nudge.boost * 0.8)
    assert boost[photo.vocab.id("man")] == pytest.approx(words.nudge.boost * 0.6)
    assert boost[photo.vocab.id("cat")] == 0


def test_a_bundle_without_a_detector_captions_as_before_and_refuses_detect():
    with Captioner.open("shapes") as cap:
        frame = np.full((64, 64, 3), 90, np.uint8)
        assert cap.caption(frame).detections == () and "detect" not in cap.caption(frame).timings_ms
        with pytest.raises(BundleError, match="no detector graph"):
            cap.detect(frame)


def test_no_detect_leaves_the_detections_out_but_a_decoder_trained_on_them_still_gets_them(photo, decode_time_only):
    frame = PHOTOS["astronaut"]
    off = photo.decode_encoded(photo.encode_frame(frame, photo.detection.override(detect=False)))
    on = photo.caption(frame)
    assert photo.takes_detections and off.detections == () and on.detections
    assert off.text == on.text and "detect" in off.timings_ms  # the same caption: it was fed the same objects
    with Captioner.open(decode_time_only) as old:  # a bundle that grounds at decode time only: the detector is off
        off = old.decode_encoded(old.encode_frame(frame, old.detection.override(detect=False)))
        assert not old.takes_detections and off.detections == () and "detect" not in off.timings_ms


def test_what_the_vision_graph_is_fed_comes_from_the_frame_or_an_earlier_one(photo):
    """The decoder hears the detections: a frame's own, or (live --detect-every) an earlier frame's."""
    astronaut, cat = PHOTOS["astronaut"], PHOTOS["cat"]
    own = photo.encode_frame(cat)
    borrowed = photo.encode_frame(cat, earlier=photo.encode_frame(astronaut))
    assert {d.label for d in borrowed.detections} == {d.label for d in photo.detect(astronaut)}
    assert "detect" not in borrowed.timings_ms and not np.array_equal(own.feature, borrowed.feature)


def test_velm_edge_detect_prints_draws_and_reports_bad_files(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [str(p) for p in samples.paths()]
    assert cli.main(["detect", *paths, str(broken), "--draw", str(tmp_path / "drawn")]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"{paths[0]}: person 0.") and "rocket.jpg: nothing detected" in captured.out
    assert f"{broken}" in captured.err
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == [p.stem + ".jpg" for p in samples.paths()]
    assert cli.main(["detect", paths[0], "--json", "--classes", "person", "--draw", str(tmp_path / "one.png")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["image"] == paths[0] and [d["label"] for d in row["detections"]] == ["person"]
    drawn, original = cv2.imread(str(tmp_path / "one.png")), PHOTOS["astronaut"]
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = row["detections"][0]["box"]
    edge = np.abs(drawn[y1 + 30:y2 - 5, x2].astype(int) - original[y1 + 30:y2 - 5, x2]).mean()
    middle = (x1 + x2) // 2
    inside = np.abs(drawn[y1 + 40:y2 - 40, middle].astype(int) - original[y1 + 40:y2 - 40, middle]).max()
    assert edge > 40 and inside == 0  # the box's outline is drawn, the photo inside left as it was


def test_detections_as_tags_are_each_labels_best_score_then_whether_there_are_more():
    found = (detect.Detection("dog", 0.9, (0, 0, 5, 5)), detect.Detection("person", 0.7, (1, 1, 4, 4)),
             detect.Detection("dog", 0.5, (6, 6, 9, 9)))
    np.testing.assert_allclose(detect.as_tags(found, ("person", "dog", "cat")), [0.7, 0.9, 0, 0, 1, 0])
    np.testing.assert_allclose(detect.as_tags((), ("person", "dog")), [0, 0, 0, 0])


def test_the_letterbox_geometry_is_what_the_runtime_uses():
    where = Letterbox(0.5, (10, 0), (100, 50))
    assert where.to_frame(np.array([[10, 0, 60, 25]], np.float32)).tolist() == [[0, 0, 100, 50]]


def test_a_class_filter_or_a_higher_threshold_changes_what_is_reported_not_the_caption(photo):
    frame = PHOTOS["astronaut"]
    plain = photo.caption(frame)
    only_cats = photo.caption(frame, detection=DetectOptions(classes=("cat",)))
    strict = photo.caption(frame, detection=DetectOptions(min_score=0.99))
    assert only_cats.detections == () == strict.detections and plain.detections
    assert only_cats.text == strict.text == plain.text  # "only cats" does not make the astronaut nobody
