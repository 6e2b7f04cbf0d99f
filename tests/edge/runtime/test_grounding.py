"""Grounding (velm_edge.runtime.grounding) and the decode loop's bias: tags from class probabilities, the
classifier's words steering the caption, and <unk> never said."""

import numpy as np
import pytest

from velm_edge.errors import BundleError
from velm_edge.runtime import decode
from velm_edge.runtime.grounding import NUDGE, WordTable, no_grounding
from velm_edge.runtime.tokenizer import Vocab

VOCAB = Vocab(("<pad>", "<start>", "<end>", "<unk>", "a", "cat", "dog", "man", "on", "sofa", "bird"))
W = {w: i for i, w in enumerate(VOCAB.tokens)}
TABLE = {"classes": [{"label": "tabby", "word": "cat"}, {"label": "Egyptian cat", "word": "cat"},
                     {"label": "beagle", "word": "dog"}, {"label": "pug", "word": "dog"},
                     {"label": "macaw", "word": "bird"}, {"label": "mailbox", "word": None}]}


def table() -> WordTable:
    return WordTable(TABLE, VOCAB, "classes.json")


def test_tags_are_the_top_classes_with_their_words():
    probs = np.array([0.1, 0.6, 0.05, 0.05, 0.0, 0.2])
    tags = table().tags(probs, top=3)
    assert [(t.label, t.word) for t in tags] == [("Egyptian cat", "cat"), ("mailbox", None), ("tabby", "cat")]
    assert tags[0].to_json() == {"label": "Egyptian cat", "word": "cat", "score": 0.6}


def test_a_word_scores_the_sum_of_its_classes():
    scores = table().word_scores(np.array([0.3, 0.3, 0.1, 0.1, 0.0, 0.2]))
    assert scores[W["cat"]] == pytest.approx(0.6) and scores[W["dog"]] == pytest.approx(0.2)
    assert scores[W["man"]] == 0.0


def test_the_word_matrix_gives_the_sayable_words_scores():
    t = table()
    probs = np.random.default_rng(0).dirichlet(np.ones(len(t)), 4)
    matrix = t.word_matrix()
    assert matrix.shape == (6, 3) and [VOCAB.tokens[i] for i in t.sayable] == ["cat", "dog", "bird"]
    assert matrix[5].sum() == 0  # the mailbox names no word
    np.testing.assert_allclose(probs @ matrix, [t.word_scores(p)[t.sayable] for p in probs], rtol=1e-6)


def test_bias_raises_the_confident_word_and_lowers_the_classifiers_other_words():
    bias, boost = table().bias(np.array([0.4, 0.4, 0.01, 0.01, 0.0, 0.18]), threshold=0.5)
    assert bias[W["<unk>"]] == -np.inf
    assert bias[W["dog"]] == -NUDGE.rival_penalty and bias[W["bird"]] == -NUDGE.rival_penalty
    assert bias[W["man"]] == 0.0 and bias[W["sofa"]] == 0.0  # words the classifier has no class for: untouched
    assert boost[W["cat"]] == pytest.approx(NUDGE.boost * 0.8) and boost.sum() == pytest.approx(NUDGE.boost * 0.8)
    bias, boost = table().bias(np.array([0.3, 0.0, 0.3, 0.0, 0.2, 0.2]), threshold=0.5)  # nothing confident
    assert boost is None and np.array_equal(bias, no_grounding(len(VOCAB), VOCAB.unk_id))


@pytest.mark.parametrize("entry, message", [({"label": "x", "word": "zebra"}, "not in vocab.txt"),
                                            ({"label": 3, "word": None}, "string 'label'"),
                                            ("tabby", "string 'label'")])
def test_a_table_that_does_not_fit_the_vocabulary_is_refused(entry, message):
    with pytest.raises(BundleError, match=message):
        WordTable({"classes": [entry]}, VOCAB, "classes.json")
    with pytest.raises(BundleError, match="non-empty 'classes'"):
        WordTable({"classes": []}, VOCAB, "classes.json")
    with pytest.raises(BundleError, match="not valid JSON"):
        WordTable.from_bytes(b"{", VOCAB, "classes.json")


def scripted(preferences: list[list[str]]):
    """A decode.Step whose logits prefer, at step k, the words in preferences[k] (first = highest)."""
    def step(tokens, states):
        k = int(states[0, 0])
        logits = np.zeros((len(tokens), len(VOCAB)), np.float32)
        for rank, word in enumerate(preferences[min(k, len(preferences) - 1)]):
            logits[:, W[word]] = 10.0 - rank
        return logits, states + 1

    return step


DOGGY = [["a"], ["dog", "cat"], ["on"], ["a"], ["sofa"], ["<end>"]]


@pytest.mark.parametrize("beam", [1, 3])
def test_the_confident_word_replaces_its_rival_and_the_score_stays_the_models(beam):
    bias, boost = table().bias(np.array([0.45, 0.45, 0.0, 0.0, 0.0, 0.1]), threshold=0.5)
    options = decode.DecodeOptions(beam_size=beam)
    plain = decode.decode(scripted(DOGGY), np.zeros((1, 1)), W["<start>"], W["<end>"], 10, options)
    grounded = decode.decode(scripted(DOGGY), np.zeros((1, 1)), W["<start>"], W["<end>"], 10, options,
                             bias=bias, boost=boost)
    assert VOCAB.decode(plain.tokens) == "a dog on a sofa"
    assert VOCAB.decode(grounded.tokens) == "a cat on a sofa"
    assert grounded.score < plain.score  # the model's own log-probability: "cat" was its second choice


def test_a_boost_ends_once_the_word_is_said():
    """Boosted "cat" would otherwise win every step: once said, the model's own order returns."""
    boost = np.zeros(len(VOCAB))
    boost[W["cat"]] = 20.0
    for beam in (1, 2):
        d = decode.decode(scripted(DOGGY), np.zeros((1, 1)), W["<start>"], W["<end>"], 10,
                          decode.DecodeOptions(beam_size=beam), boost=boost)
        assert VOCAB.decode(d.tokens).split().count("cat") == 1, VOCAB.decode(d.tokens)


@pytest.mark.parametrize("beam", [1, 3])
def test_unk_is_never_said_even_when_the_model_prefers_it(beam):
    prefs = [["a"], ["<unk>", "man"], ["<unk>", "on"], ["<unk>", "<end>"]]
    bias = no_grounding(len(VOCAB), VOCAB.unk_id)
    d = decode.decode(scripted(prefs), np.zeros((1, 1)), W["<start>"], W["<end>"], 10,
                      decode.DecodeOptions(beam_size=beam), bias=bias)
    assert VOCAB.unk_id not in d.tokens and VOCAB.decode(d.tokens) == "a man on"
