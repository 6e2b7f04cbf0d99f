"""Self-critical training: samples end at <end>, each sample is judged against its image's other samples, and
epochs of it make a decoder's own greedy captions score higher."""

import numpy as np
import pytest

pytest.importorskip("keras")

from velm_convert import metrics, scst  # noqa: E402
from velm_edge.runtime.tokenizer import Vocab  # noqa: E402

CAPTIONS = ["a red circle", "two blue squares", "a green star on the left", "three yellow triangles",
            "a purple cross above a red circle", "an orange diamond"]


def test_samples_are_cut_at_their_first_end():
    tokens = np.array([[5, 6, 2, 7, 2], [5, 5, 5, 5, 5], [2, 9, 9, 9, 9]])
    np.testing.assert_array_equal(scst.ended(tokens, end_id=2, pad_id=0),
                                  [[5, 6, 2, 0, 0], [5, 5, 5, 5, 5], [2, 0, 0, 0, 0]])


def test_each_sample_is_judged_against_the_mean_of_the_other_samples_of_its_image():
    rewards = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    adv = scst.advantages(rewards)
    np.testing.assert_allclose(adv, [[1 - 2.5, 2 - 2.0, 3 - 1.5], [0.0, 0.0, 0.0]])


def test_the_cider_scorer_is_the_corpus_metric_image_by_image():
    refs = [[c, c + " here"] for c in CAPTIONS]
    hyps = ["a red circle", "two squares", "a star", "yellow triangles", "a cross", "an orange diamond"]
    scorer = metrics.CiderD(refs)
    per_image = [scorer.score(i, h.split()) for i, h in enumerate(hyps)]
    assert np.mean(per_image) == pytest.approx(metrics.cider_d(hyps, refs))
    assert per_image[0] > per_image[1] > 0  # the exact caption scores above a partial one


def test_self_critical_epochs_raise_the_cider_of_the_decoders_own_captions():
    """A tiny head whose six 'images' (random feature vectors) each have one caption: from random weights, its
    greedy captions score near 0; self-critical epochs alone (no cross-entropy) must teach it to say them."""
    from velm_convert.config import ModelConfig
    from velm_convert.model import Velm, build_on_features

    vocab = Vocab.build(CAPTIONS)
    cfg = ModelConfig(vocab_size=len(vocab), max_length=8, feature_dim=32, embed_dim=16, units=32, dropout=0.0)
    import keras

    keras.utils.set_random_seed(0)
    head = build_on_features(cfg, 8)
    pooled = np.random.default_rng(0).normal(size=(len(CAPTIONS), 8)).astype(np.float32)
    refs = [[c] * 5 for c in CAPTIONS]

    def greedy_cider() -> float:
        return metrics.cider_d(Velm(head, vocab, cfg).caption(pooled), refs)

    before = greedy_cider()
    history = scst.finetune(head, {"pooled": pooled}, refs, vocab, cfg.steps, None, None, epochs=60,
                            learning_rate=1e-2, samples=8, batch_size=6, seed=0)
    after = greedy_cider()
    assert len(history) == 60 and history[-1]["sampled_cider"] > history[0]["sampled_cider"]
    assert before < 0.5 and after > 1.5, (before, after)  # 0.04 -> 2.6 when written
