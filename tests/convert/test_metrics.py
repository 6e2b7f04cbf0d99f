"""Our metrics against independent implementations on the same (pre-tokenized) inputs."""

import numpy as np
import pytest
from nltk.translate.bleu_score import corpus_bleu
from pycocoevalcap.cider.cider_scorer import CiderScorer

from velm_convert import metrics
from velm_edge.synth import scenes

WORDS = "a the red blue green small large circle square star two and above left of to".split()


def random_corpus(seed: int, n: int = 60, refs: int = 3, min_words: int = 2):
    rng = np.random.default_rng(seed)

    def sentence():
        return " ".join(rng.choice(WORDS, size=int(rng.integers(min_words, 12))))

    hyps = [sentence() for _ in range(n)]
    # make hypotheses overlap references: references are edited copies of the hypothesis
    refs_ = []
    for h in hyps:
        rs = []
        for _ in range(refs):
            w = h.split()
            for _ in range(int(rng.integers(0, 4))):
                w[int(rng.integers(len(w)))] = str(rng.choice(WORDS))
            rs.append(" ".join(w[: max(1, len(w) - int(rng.integers(0, 3)))]))
        refs_.append(rs)
    return hyps, refs_


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_matches_nltk_corpus_bleu(seed):
    # nltk counts at least one n-gram for a hypothesis shorter than n (sacrebleu and coco-caption count
    # none); with hypotheses of 4+ words the definitions coincide.
    hyps, refs = random_corpus(seed, min_words=4)
    ours = metrics.bleu(hyps, refs)
    for n in range(1, 5):
        weights = tuple([1.0 / n] * n)
        theirs = corpus_bleu([[r.split() for r in rs] for rs in refs], [h.split() for h in hyps], weights=weights)
        assert ours[n - 1] == pytest.approx(theirs, abs=1e-9), n


def test_bleu4_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = random_corpus(5, refs=2)
    streams = [[rs[k] for rs in refs] for k in range(2)]
    theirs = sacrebleu.corpus_bleu(hyps, streams, tokenize="none", smooth_method="none", force=True).score / 100
    assert metrics.bleu(hyps, refs)[3] == pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_cider_d_matches_pycocoevalcap(seed):
    hyps, refs = random_corpus(seed, refs=4)
    scorer = CiderScorer(n=4, sigma=6.0)
    for h, rs in zip(hyps, refs):
        scorer += (h, rs)
    theirs, _ = scorer.compute_score()
    assert metrics.cider_d(hyps, refs) == pytest.approx(theirs, rel=1e-9)


def test_metrics_on_scene_captions_perfect_and_degraded():
    caps = [scenes.generate(s)[1] for s in range(200)]
    refs = [[c] for c in caps]
    perfect = metrics.score(caps, refs)
    assert perfect["exact_match"] == 1.0 and perfect["bleu4"] == pytest.approx(1.0)
    wrong = [c.replace("red", "blue") for c in caps]
    degraded = metrics.score(wrong, refs)
    assert degraded["exact_match"] < 1.0 and degraded["bleu4"] < 1.0 and degraded["cider"] < perfect["cider"]
    scorer = CiderScorer(n=4, sigma=6.0)
    for h, rs in zip(wrong, refs):
        scorer += (h.replace(",", ""), [r.replace(",", "") for r in rs])
    assert metrics.cider_d(wrong, refs) == pytest.approx(scorer.compute_score()[0], rel=1e-9)


def test_exact_match_normalizes_and_accepts_any_reference():
    assert metrics.exact_match(["A red circle."], [["a blue star", "a red circle"]]) == 1.0
    assert metrics.exact_match(["a red circle", "x"], [["a red circle"], ["y"]]) == 0.5


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        metrics.score(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        metrics.bleu(["a"], [[]])
    with pytest.raises(ValueError, match="no captions"):
        metrics.cider_d([], [])


def test_table_lists_every_metric():
    t = metrics.table({"float": metrics.score(["a red circle"], [["a red circle"]])})
    for col in ("exact_match", "bleu1", "bleu4", "cider"):
        assert col in t
