import numpy as np
import pytest

from velm_edge.decode import beam_search, greedy, log_softmax

START, END = 1, 2


def table_step(table: dict[int, dict[int, float]], vocab: int = 6):
    """A step whose next-token distribution depends only on the previous token (state = last token)."""
    def step(tokens, states):
        logits = np.full((len(tokens), vocab), -1e9)
        for i, t in enumerate(tokens):
            for nxt, p in table.get(int(t), {END: 1.0}).items():
                logits[i, nxt] = np.log(p)
        return logits, states + 1
    return step


def test_greedy_batches_rows_independently_and_stops_at_end():
    step = table_step({START: {3: 1.0}, 3: {4: 0.9, END: 0.1}, 4: {END: 1.0}})
    out = greedy(step, np.zeros((2, 1)), START, END, max_steps=10)
    assert [d.tokens for d in out] == [(3, 4), (3, 4)]
    assert out[0].score == pytest.approx(np.log(0.9))


def test_greedy_respects_max_steps():
    step = table_step({START: {3: 1.0}, 3: {3: 1.0}})
    (d,) = greedy(step, np.zeros((1, 1)), START, END, max_steps=4)
    assert d.tokens == (3, 3, 3, 3)


def test_beam_search_finds_the_likelier_caption_that_greedy_misses():
    # greedy takes 3 (0.6) then a 50/50 split; beam finds 4 (0.4) -> END (1.0): 0.4 > 0.6 * 0.5
    table = {START: {3: 0.6, 4: 0.4}, 3: {5: 0.5, END: 0.5}, 5: {END: 1.0}, 4: {END: 1.0}}
    step = table_step(table)
    (g,) = greedy(step, np.zeros((1, 1)), START, END, 10)
    b = beam_search(step, np.zeros((1, 1)), START, END, 10, beam_size=2)
    assert b.tokens == (4,) and b.score == pytest.approx(np.log(0.4))
    assert g.score < b.score


def test_beam_size_one_equals_greedy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 8)) * 3

    def step(tokens, states):
        return w[tokens] + states, states

    (g,) = greedy(step, np.zeros((1, 8)), START, END, 12)
    b = beam_search(step, np.zeros((1, 8)), START, END, 12, beam_size=1)
    assert b.tokens == g.tokens


def test_bad_arguments():
    with pytest.raises(ValueError):
        greedy(lambda t, s: (t, s), np.zeros((1, 1)), START, END, 0)
    with pytest.raises(ValueError):
        beam_search(lambda t, s: (t, s), np.zeros((1, 1)), START, END, 5, beam_size=0)
    assert np.allclose(np.exp(log_softmax(np.array([[1.0, 2.0, 3.0]]))).sum(), 1.0)
