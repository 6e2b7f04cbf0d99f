import numpy as np
import pytest

from velm_edge.runtime.decode import DecodeOptions, banned, beam_search, decode, greedy, log_softmax
from velm_edge.runtime.quant import QParams, dequantize, quantize

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


def test_greedy_respects_max_steps_and_says_when_it_cut_short():
    step = table_step({START: {3: 1.0}, 3: {3: 1.0}})
    (d,) = greedy(step, np.zeros((1, 1)), START, END, max_steps=4)
    assert d.tokens == (3, 3, 3) and not d.complete  # the last step is kept for <end>
    b = beam_search(step, np.zeros((1, 1)), START, END, 4, beam_size=1)
    assert b.tokens == (3, 3, 3) and not b.complete


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


def random_step(vocab=9, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(vocab, vocab)) * 3

    def step(tokens, states):
        return w[tokens] + states[:, :1], states

    return step


def test_greedy_on_int8_logits_equals_greedy_on_the_real_logits():
    step = random_step()
    q = QParams(0.05, 3, "int8")

    def int8_step(tokens, states):
        logits, states = step(tokens, states)
        return quantize(logits, q), states

    def real_of_int8(tokens, states):
        logits, states = int8_step(tokens, states)
        return dequantize(logits, q), states

    (a,) = greedy(int8_step, np.zeros((1, 1)), START, END, 12, to_real=lambda x: dequantize(x, q))
    (b,) = greedy(real_of_int8, np.zeros((1, 1)), START, END, 12)
    assert a.tokens == b.tokens and a.score == pytest.approx(b.score)


def test_min_length_holds_back_the_end():
    step = table_step({START: {3: 1.0}, 3: {END: 0.7, 4: 0.3}, 4: {END: 0.9, 5: 0.1}, 5: {END: 1.0}})
    (d,) = greedy(step, np.zeros((1, 1)), START, END, 10, min_length=3)
    assert d.tokens == (3, 4, 5) and d.complete
    b = beam_search(step, np.zeros((1, 1)), START, END, 10, beam_size=2, min_length=3)
    assert b.tokens == (3, 4, 5)


def test_no_repeat_ngram():
    assert banned([3, 4, 3], 2) == {4} and banned([3, 4], 1) == {3, 4} and banned([3], 3) == set()
    step = table_step({START: {3: 1.0}, 3: {4: 0.6, 5: 0.4}, 4: {3: 0.9, END: 0.1}, 5: {END: 1.0}})
    (plain,) = greedy(step, np.zeros((1, 1)), START, END, 8)
    assert plain.tokens[:4] == (3, 4, 3, 4)
    (d,) = greedy(step, np.zeros((1, 1)), START, END, 8, no_repeat_ngram=2)
    assert d.tokens == (3, 4, 3, 5)  # "3 4" may not appear twice
    b = beam_search(step, np.zeros((1, 1)), START, END, 8, beam_size=3, no_repeat_ngram=2)
    assert all(tuple(b.tokens[i:i + 2]) != tuple(b.tokens[j:j + 2])
               for i in range(len(b.tokens) - 1) for j in range(i + 1, len(b.tokens) - 1))


def test_length_penalty_prefers_longer_captions():
    # "3" then END: log(0.5); "4 5" then END: log(0.45 * 0.9): raw prefers the short one
    step = table_step({START: {3: 0.5, 4: 0.45, END: 0.05}, 3: {END: 1.0}, 4: {5: 0.9, END: 0.1}, 5: {END: 1.0}})
    assert beam_search(step, np.zeros((1, 1)), START, END, 6, beam_size=3).tokens == (3,)
    assert beam_search(step, np.zeros((1, 1)), START, END, 6, beam_size=3, length_penalty=1.0).tokens == (4, 5)


def test_time_budget_stops_early_and_marks_the_caption_incomplete():
    import time

    slow = table_step({START: {3: 1.0}, 3: {3: 1.0}})

    def step(tokens, states):
        time.sleep(0.01)
        return slow(tokens, states)

    opts = DecodeOptions(time_budget_ms=25)
    d = decode(step, np.zeros((1, 1)), START, END, 200, opts)
    assert not d.complete and 1 <= len(d.tokens) < 20
    b = decode(step, np.zeros((1, 1)), START, END, 200, DecodeOptions(beam_size=2, time_budget_ms=25))
    assert not b.complete and len(b.tokens) < 20


def test_decode_options_are_validated():
    for bad in ({"beam_size": 0}, {"beam_size": 17}, {"min_length": -1}, {"max_length": 0}, {"time_budget_ms": 0},
                {"length_penalty": float("nan")}, {"ground": 1.5}):
        with pytest.raises(ValueError):
            DecodeOptions(**bad)
    assert DecodeOptions(max_length=3).steps(15) == 4 and DecodeOptions().steps(15) == 15
    assert DecodeOptions().strategy == "greedy" and DecodeOptions(beam_size=4).strategy == "beam"  # one width, no mode
    shipped = DecodeOptions(beam_size=3, no_repeat_ngram=2, ground=0.3)
    assert DecodeOptions.recommended({"decoding": shipped.for_manifest()}) == shipped
    assert DecodeOptions.recommended({}) == DecodeOptions()
    assert shipped.override(beam_size=None, max_length=5) == DecodeOptions(beam_size=3, no_repeat_ngram=2, ground=0.3,
                                                                           max_length=5)  # None: not given


def test_the_single_row_fast_path_agrees_with_the_batched_path():
    step = random_step(seed=3)
    states = np.array([[0.0], [1.5], [-2.0]])
    together = greedy(step, states, START, END, 10)
    alone = [greedy(step, states[i:i + 1], START, END, 10)[0] for i in range(3)]
    assert [(d.tokens, d.complete) for d in together] == [(d.tokens, d.complete) for d in alone]
    assert [d.score for d in together] == pytest.approx([d.score for d in alone])


def test_the_requantization_table_equals_the_maths():
    from velm_edge.runtime.quant import requantize, requantizer

    v = np.arange(-128, 128).astype(np.int8).reshape(2, 128)
    for src, dst in ((QParams(0.02, -5, "int8"), QParams(0.0078125, -1, "int8")),
                     (QParams(0.01, 3, "int8"), QParams(0.01, 3, "int8")),
                     (QParams(0.05, 0, "int8"), QParams(0.0, 0, "float32"))):
        np.testing.assert_array_equal(requantizer(src, dst)(v), requantize(v, src, dst))


def test_top_indices_is_a_partial_sort_that_agrees_with_a_whole_one():
    from velm_edge.runtime.decode import top_indices

    rng = np.random.default_rng(0)
    for _ in range(500):
        x = rng.integers(-20, 5, (rng.integers(1, 4), rng.integers(1, 60))).astype(float)
        x[rng.random(x.shape) < 0.2] = -np.inf
        k = int(rng.integers(1, 8))
        got = top_indices(x, k)
        whole = np.argsort(-x.ravel(), kind="stable")[:k]
        assert len(got) == min(k, x.size) and np.array_equal(x.ravel()[got], x.ravel()[whole])
    tied = np.array([[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 2.0, -np.inf]])
    assert top_indices(tied, 3).tolist() == [1, 2, 4]  # ties: the lower index first


def test_log_softmax_from_byte_tables_is_bit_for_bit_that_of_the_dequantized_rows():
    from velm_edge.runtime.quant import Dequantizer

    rng = np.random.default_rng(5)
    for q in (QParams(0.0797719, -14, "int8"), QParams(0.31, 7, "int8"), QParams(0.02, 130, "uint8")):
        to_real = Dequantizer(q)
        for _ in range(40):
            rows = rng.normal(0, 25, (int(rng.integers(1, 5)), int(rng.integers(1, 600))))
            codes = quantize(rows, q)
            np.testing.assert_array_equal(log_softmax(codes, to_real.table), log_softmax(dequantize(codes, q)))
    assert Dequantizer(QParams(0.0, 0, "float32")).table is None  # real logits: nothing to look up


def test_beam_search_over_int8_logits_gives_the_same_caption_through_the_byte_tables():
    from velm_edge.runtime.quant import Dequantizer

    q = QParams(0.05, 3, "int8")
    for seed in range(6):
        step = random_step(seed=seed)

        def int8_step(tokens, states, step=step):
            logits, states = step(tokens, states)
            return quantize(logits, q), states

        tables = beam_search(int8_step, np.zeros((1, 1)), START, END, 12, 3, to_real=Dequantizer(q))
        maths = beam_search(int8_step, np.zeros((1, 1)), START, END, 12, 3, to_real=lambda x: dequantize(x, q))
        assert (tables.tokens, tables.score, tables.complete) == (maths.tokens, maths.score, maths.complete)
