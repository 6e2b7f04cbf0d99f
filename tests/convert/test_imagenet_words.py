"""The ImageNet class -> caption word table (velm_convert.imagenet_words), built from Debian's darknet class list
and WordNet 3.0, against the shipped photo bundle's vocabulary."""

import pytest

from velm_convert import imagenet_words as iw
from velm_edge.runtime.bundle import DEFAULT_BUNDLE
from velm_edge.runtime.tokenizer import Vocab

if not (iw.DARKNET / "imagenet.labels.list").is_file() or not iw.WORDNET.is_file():
    pytest.skip("needs Debian's darknet and wordnet-base (apt-get install darknet wordnet-base; .ci/run does)",
                allow_module_level=True)

VOCAB = Vocab.load(DEFAULT_BUNDLE / "vocab.txt")


@pytest.fixture(scope="module")
def table():
    return iw.word_table(set(VOCAB.tokens[4:]))


def by_label(table):
    return {c["label"]: c["word"] for c in table["classes"]}


def test_the_classes_are_the_weights_order(table):
    ids = [c["id"] for c in table["classes"]]
    assert len(ids) == 1000 and ids == sorted(ids)
    assert table["classes"][285]["id"] == "n02124075" and table["classes"][285]["label"] == "Egyptian cat"
    assert table["classes"][88]["label"] == "macaw" and table["classes"][670]["label"] == "motor scooter"


def test_climbing_wordnet_finds_the_everyday_word(table):
    words = by_label(table)
    assert words["Egyptian cat"] == words["tabby"] == "cat"
    assert words["macaw"] == words["goldfinch"] == "bird"
    assert words["sorrel"] == "horse"
    dogs = [c for c in table["classes"][151:269]]  # the 118 dog breeds sit together in the sorted order
    assert all(c["word"] == "dog" for c in dogs), [c for c in dogs if c["word"] != "dog"][:5]


def test_the_reviewed_traps(table):
    words = by_label(table)
    assert words["kite"] == "bird"  # ImageNet's kite is a bird of prey, not a toy
    assert words["lion"] is None and words["tiger"] is None  # "big cat", not a cat
    assert words["motor scooter"] == words["moped"] == "motorcycle"
    assert words["espresso"] == "coffee"


def test_every_word_is_one_the_vocabulary_can_say_and_the_licence_travels(table):
    words = {c["word"] for c in table["classes"]} - {None}
    assert words <= set(VOCAB.tokens[4:])
    assert not words & iw.GENERAL
    assert sum(c["word"] is not None for c in table["classes"]) > 500
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in table["wordnet_licence"]
    assert "darknet" in table["sources"]["classes"] and "WordNet 3.0" in table["sources"]["words"]


def test_overrides_name_real_classes():
    ids = {wnid for wnid, _ in iw.imagenet_classes()}
    assert set(iw.OVERRIDES) <= ids
