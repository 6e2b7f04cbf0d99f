"""The grounded photo bundle: its vision graph's ImageNet classes, classes.json, tags in every result, and the
contract that refuses a grounded bundle whose parts disagree (older bundles, without classes, still load)."""

import json
import re
import shutil

import pytest
from bundle_mutations import reseal

from velm_edge import samples
from velm_edge.errors import BundleError
from velm_edge.runtime.bundle import DEFAULT_BUNDLE, SHAPES_BUNDLE, Bundle
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.image_file import read_image


@pytest.fixture(scope="module")
def photo():
    with Captioner.open(DEFAULT_BUNDLE) as cap:
        yield cap


def test_the_vision_graph_outputs_int8_class_probabilities_on_edge_tpu_ops(photo):
    vision = photo.vision
    assert vision.shape("classes", True) == (1, 1000) and vision.dtype("classes", True) == "int8"
    assert len(photo.bundle.words) == 1000
    manifest = photo.bundle.manifest
    assert manifest["op_check"]["vision"]["not_edgetpu"] == [] and "SOFTMAX" in manifest["op_check"]["vision"]["ops"]


def test_the_cat_photo_is_tagged_cat_and_captioned_cat(photo):
    caption = photo.caption(read_image(samples.FOLDER / "cat.jpg"))
    assert caption.tags[0].word == "cat" and caption.tags[0].score > 0.5, caption.tags
    assert "cat" in caption.text.split(), caption.text
    tags = caption.to_json()["tags"]
    assert len(tags) == 5 and set(tags[0]) == {"label", "word", "score"}
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)


def test_grounding_can_be_turned_off_and_tags_stay(photo):
    on = photo.caption(read_image(samples.FOLDER / "cat.jpg"))
    off = photo.caption(read_image(samples.FOLDER / "cat.jpg"), photo.options.override(ground=0.0))
    assert off.tags == on.tags and "cat" not in off.text.split(), off.text  # Flickr8k's prior, ungrounded


def test_a_bundle_without_classes_still_loads_and_has_no_tags():
    with Captioner.open(SHAPES_BUNDLE) as cap:
        assert cap.bundle.words is None and "classes" not in cap.vision.outputs
        assert cap.caption(read_image(samples.FOLDER / "rocket.jpg")).tags == ()


def damaged(tmp_path, change) -> Bundle:
    root = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "b.velm")
    change(root)
    reseal(root)
    return Bundle.load(root)


def edit_json(name, edit):
    def change(root):
        data = json.loads((root / name).read_text())
        edit(data)
        (root / name).write_text(json.dumps(data))
    return change


@pytest.mark.parametrize("label, change, message", [
    ("no classes.json", lambda root: ((root / "classes.json").unlink(), edit_json(
        "manifest.json", lambda m: m["files"].pop("classes.json"))(root)), "has no classes.json"),
    ("a class too many", edit_json("classes.json", lambda t: t["classes"].append({"label": "x", "word": None})),
     "classes has shape"),
    ("a word outside the vocabulary", edit_json("classes.json", lambda t: t["classes"][0].update(word="zebroid")),
     "not in vocab.txt"),
    ("no class list", edit_json("classes.json", lambda t: t.pop("classes")), "'classes' list"),
    ("an output the manifest does not declare", edit_json(
        "manifest.json", lambda m: m["graphs"]["vision"]["outputs"].pop("classes")), "outputs"),
    ("the tags-alone start's state not declared", edit_json(
        "manifest.json", lambda m: m["graphs"]["vision"]["outputs"].pop("tag_state")), "outputs"),
    ("an unknown output declared", edit_json(
        "manifest.json", lambda m: m["graphs"]["vision"]["outputs"].update(
            colour=m["graphs"]["vision"]["outputs"]["state"])), "must name"),
])
def test_a_grounded_bundle_whose_parts_disagree_is_refused(tmp_path, label, change, message):
    with pytest.raises(BundleError, match=message):
        Captioner(damaged(tmp_path, change)).close()


def test_the_second_decoding_starts_from_the_tags_alone(photo):
    """The photo bundle's decoder was trained on tags (and COCO's text): its vision graph also gives the start
    from the tags alone, and the second decoding (the image's caption missed the confident "cat") uses it."""
    encoded = photo.encode_frame(read_image(samples.FOLDER / "cat.jpg"))
    assert encoded.tag_start is not None and [a.shape for a in encoded.tag_start] == [encoded.feature.shape,
                                                                                      encoded.state.shape]
    decode = lambda tag_start: photo.vocab.decode(photo.decode_features(  # noqa: E731
        encoded.feature, encoded.state, None, encoded.classes, tag_start).tokens)
    from_tags, from_image = decode(encoded.tag_start), decode(None)
    assert "cat" in from_tags.split() and from_tags == photo.decode_encoded(encoded).text
    assert from_image != from_tags  # without the tags-alone start, the second decoding is the image's, raised


class FakeGraph:
    def __init__(self, outputs):
        self.inputs, self.outputs = {"image": {}}, dict.fromkeys(outputs, {})


@pytest.mark.parametrize("outputs", [{"feature", "state", "classes", "tag_feature"},
                                     {"feature", "state", "tag_feature", "tag_state"}])
def test_a_start_from_the_tags_alone_needs_both_halves_and_the_classes(outputs):
    from velm_edge.runtime.contract import check_graphs

    bundle = Bundle.load(DEFAULT_BUNDLE)
    bundle.manifest["graphs"]["vision"]["outputs"] = dict.fromkeys(outputs, {})
    with pytest.raises(BundleError, match="start from the tags alone needs all of"):
        check_graphs(bundle, {"vision": FakeGraph(outputs)})


def test_the_second_decoding_keeps_within_the_time_budget(photo):
    """The budget is the whole caption's: when the first decoding spends it, no raised second one runs."""
    encoded = photo.encode_frame(read_image(samples.FOLDER / "cat.jpg"))
    whole = photo.decode_encoded(encoded)
    assert "cat" in whole.text.split() and photo.decode_encoded(encoded, photo.options.override(
        ground=0.0)).text != whole.text  # the cat is named by the second decoding
    language = photo.language
    before = language.invokes
    cut = photo.decode_encoded(encoded, photo.options.override(time_budget_ms=0.001))  # over after one step
    assert language.invokes - before == 1 and not cut.complete and "cat" not in cut.text.split()


def test_caption_tags_prints_each_word_once(capsys):
    from velm_edge.tools import cli

    assert cli.main(["caption", str(samples.FOLDER / "cat.jpg"), "--tags"]) == 0
    line = capsys.readouterr().out.strip()
    assert re.search(r"  \[cat 0\.\d\d\]$", line), line  # four cat classes in the tags, one word printed
