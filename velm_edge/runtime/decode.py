"""Caption decoding as pure functions over a ``step`` callable.

``step(tokens, states) -> (logits, new_states)`` advances a batch of decoder rows by one token:
``tokens`` is an int array (B,), ``states`` an array (B, S); ``logits`` is (B, V).  Whatever holds
the image feature (a Keras model, a TFLite interpreter, a test stub) lives inside the callable, so
these functions run the same on the workstation and on the device.

Logits may stay in the graph's integer domain: quantization is monotonic, so the argmax of int8
logits is the argmax of the real ones and greedy decoding never dequantizes to choose a token.
Only scores need real values: pass ``to_real`` (e.g. a dequantizer) and it is applied once, to the
rows that were chosen, at the end (greedy) or to each step's rows (beam search).  A beam search whose
``to_real`` is a ``quant.Dequantizer`` of 8-bit logits reads each step's log-probabilities from tables of
the 256 byte values instead (``log_softmax``), with the same result bit for bit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from velm_edge.errors import OptionError
from velm_edge.runtime.contract import MAX_BEAM, MAX_LENGTH_PENALTY, MAX_STEPS
from velm_edge.runtime.quant import Dequantizer

Step = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
ToReal = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Decoded:
    tokens: tuple[int, ...]  # generated ids, without <start>, up to and excluding <end>
    score: float  # sum of log-probabilities of the generated tokens (and <end>, if reached)
    complete: bool = True  # False when max_steps or the time budget ran out before <end>


@dataclass(frozen=True, kw_only=True)
class DecodeOptions:
    """How a caption is decoded: the one spec of every decoding option.  The command lines' flags
    (``velm-edge``'s and ``velm-convert``'s), the service's query keys and the converter's parameters are made
    from these fields and their help, and passed on whole; the bounds are checked here."""
    beam_size: int = field(default=1, metadata={"help": "1 = greedy; more = beam search of that width"})
    length_penalty: float = field(default=0.0, metadata={"help": "beam: log-probability / (words + 1) ** this"})
    no_repeat_ngram: int = field(default=0, metadata={"help": "forbid repeating any n-gram of this size (0 = off)"})
    min_length: int = field(default=0, metadata={"help": "words before the caption may end"})
    max_length: int | None = field(default=None, metadata={"help": "words at most"})
    time_budget_ms: float | None = field(default=None, metadata={
        "help": "stop decoding after this long, keep the best caption so far"})
    ground: float = field(default=0.5, metadata={
        "help": "a word the ImageNet classifier gives this probability steers the caption (0 = off)"})

    MANIFEST = ("beam_size", "length_penalty", "no_repeat_ngram", "ground")  # what a bundle recommends

    def __post_init__(self) -> None:
        if not 1 <= self.beam_size <= MAX_BEAM:
            raise OptionError(f"beam_size must be 1-{MAX_BEAM}, got {self.beam_size}")
        if not 0 <= self.length_penalty <= MAX_LENGTH_PENALTY:  # NaN and infinities fail too
            raise OptionError(f"length_penalty must be in [0, {MAX_LENGTH_PENALTY:g}], got {self.length_penalty}")
        if self.no_repeat_ngram < 0 or self.min_length < 0:
            raise OptionError(f"no_repeat_ngram and min_length must be >= 0, got {self.no_repeat_ngram}, "
                             f"{self.min_length}")
        if self.no_repeat_ngram > MAX_STEPS or self.min_length > MAX_STEPS:
            raise OptionError(f"no_repeat_ngram and min_length must be <= {MAX_STEPS}, got {self.no_repeat_ngram}, "
                              f"{self.min_length}")
        if self.max_length is not None and not 1 <= self.max_length <= MAX_STEPS:
            raise OptionError(f"max_length must be 1-{MAX_STEPS} (or None), got {self.max_length}")
        if self.time_budget_ms is not None and not 0 < self.time_budget_ms <= 3_600_000:
            raise OptionError(f"time_budget_ms must be in (0, 3600000] (or None), got {self.time_budget_ms}")
        if not 0 <= self.ground <= 1:
            raise OptionError(f"ground must be a probability in [0, 1] (0 = off), got {self.ground}")

    @property
    def strategy(self) -> str:
        """greedy (a beam of one) or beam."""
        return "greedy" if self.beam_size == 1 else "beam"

    def override(self, **fields) -> DecodeOptions:
        """These options with the given ``fields`` replaced, the ones given as None left as they are (how a
        command line or a request puts its decoding options over a bundle's recommendation)."""
        given = {k: v for k, v in fields.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self

    @classmethod
    def recommended(cls, manifest: dict) -> DecodeOptions:
        """The decoding a bundle's manifest recommends (its optional "decoding" entry, ``MANIFEST`` fields), else
        greedy."""
        d = manifest.get("decoding") or {}
        return cls(**{k: type(getattr(cls, k))(d[k]) for k in cls.MANIFEST if k in d})

    def for_manifest(self) -> dict:
        """The ``MANIFEST`` fields, as a bundle's manifest stores its recommended decoding."""
        return {k: getattr(self, k) for k in self.MANIFEST}

    def steps(self, model_steps: int) -> int:
        """Decoder steps (words + the <end> step): the model's limit, or fewer when max_length asks."""
        return model_steps if self.max_length is None else min(model_steps, self.max_length + 1)

    def deadline(self, start: float | None = None) -> float | None:
        if self.time_budget_ms is None:
            return None
        return (time.perf_counter() if start is None else start) + self.time_budget_ms / 1e3


def log_softmax(logits: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """Log-probabilities (float64) of the last axis of real ``logits``.  With ``table`` (a ``Dequantizer``'s: the
    real value of each byte), ``logits`` are rows (B, V) of 8-bit codes, and each row's maximum, exponentials and
    log-probabilities are worked out for the 256 byte values only, then looked up: the same numbers, summed in
    the same order, as for the dequantized rows (a beam step's 3 x 3,700 scores: 48 us against 67 with the
    dequantizing)."""
    if table is None:
        z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    codes = logits.view(np.uint8).astype(np.intp)
    codes += np.arange(0, 256 * len(logits), 256)[:, None]  # row r reads its own table, at r * 256
    z = table - table[logits.max(axis=-1).view(np.uint8)][:, None]  # (B, 256): real values are monotonic in codes
    return (z - np.log(np.exp(z).take(codes).sum(axis=-1, keepdims=True))).take(codes)


def banned(history: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already in ``history`` (generated words only)."""
    if n <= 0 or len(history) < n - 1:
        return set()
    if n == 1:
        return set(history)
    prefix = tuple(history[len(history) - n + 1:])
    return {history[i + n - 1] for i in range(len(history) - n + 1) if tuple(history[i:i + n - 1]) == prefix}


def _masked(row: np.ndarray, ban: set[int]) -> np.ndarray:
    row = row.astype(np.float64)
    row[list(ban)] = -np.inf
    return row


def _check(max_steps: int, beam_size: int = 1) -> None:
    if beam_size < 1 or max_steps < 1:
        raise OptionError(f"beam_size and max_steps must be >= 1, got {beam_size}, {max_steps}")


def _nudged(real: np.ndarray, bias: np.ndarray | None, boost: np.ndarray | None) -> np.ndarray:
    """Real logits (or log-probabilities) with the grounding bias and the still-unsaid boosts added."""
    if bias is not None:
        real = real + bias
    return real if boost is None else real + boost


def greedy(step: Step, states: np.ndarray, start_id: int, end_id: int, max_steps: int, *,
           min_length: int = 0, no_repeat_ngram: int = 0, deadline: float | None = None,
           to_real: ToReal | None = None, bias: np.ndarray | None = None,
           boost: np.ndarray | None = None) -> list[Decoded]:
    """Greedy decoding of a batch of rows (one row per image), all rows stepped together.

    ``max_steps`` counts decoder steps including the one that emits <end>, so a caption has at most
    max_steps - 1 words; a row that has not ended by then is returned with ``complete=False``.
    ``bias`` (V,) is added to the real logits at every step (-inf forbids a token); ``boost`` (V,) too,
    but a boosted word's boost ends once that row has said it.  Scores stay the model's own."""
    _check(max_steps)
    n = states.shape[0]
    if n == 1 and min_length == 0 and no_repeat_ngram == 0:
        return [_greedy_one(step, states, start_id, end_id, max_steps, deadline, to_real, bias, boost)]
    tokens = np.full(n, start_id, np.int64)
    out: list[list[int]] = [[] for _ in range(n)]
    chosen_logits, chosen, live = [], [], []  # per step: (B, V) rows, (B,) tokens, (B,) still decoding
    done = np.zeros(n, bool)
    ended = np.zeros(n, bool)  # reached <end>
    boosts = None if boost is None else np.repeat(boost[None], n, 0)
    nudged = bias is not None or boost is not None
    constrained = min_length > 0 or no_repeat_ngram > 0
    for k in range(max_steps):
        logits, states = step(tokens, states)
        choose = logits
        if nudged:
            real = to_real(logits) if to_real else logits
            choose = _nudged(real.astype(np.float64), bias, boosts)
        if constrained:
            tokens = np.array([
                np.argmax(_masked(choose[i], banned(out[i], no_repeat_ngram)
                                  | ({end_id} if len(out[i]) < min_length else set())))
                for i in range(n)], np.int64)
        else:
            tokens = np.argmax(choose, axis=-1)
        if boosts is not None:
            boosts[np.arange(n), tokens] = 0.0
        last = k == max_steps - 1  # the last step only takes <end>: a row without it is cut short
        scored = ~done & (tokens == end_id) if last else ~done
        chosen_logits.append(logits)
        chosen.append(tokens)
        live.append(scored)
        for i in np.flatnonzero(~done):
            if tokens[i] == end_id:
                ended[i] = True
            elif not last:
                out[i].append(int(tokens[i]))
        done |= ended
        if done.all() or (deadline is not None and time.perf_counter() > deadline):
            break
    rows = np.stack(chosen_logits)  # (T, B, V)
    lp = log_softmax(to_real(rows) if to_real else rows)
    picked = np.take_along_axis(lp, np.stack(chosen)[..., None], axis=-1)[..., 0]
    scores = np.where(np.stack(live), picked, 0.0).sum(axis=0)
    return [Decoded(tuple(t), float(s), bool(e)) for t, s, e in zip(out, scores, ended)]


def _greedy_one(step: Step, state: np.ndarray, start_id: int, end_id: int, max_steps: int,
                deadline: float | None, to_real: ToReal | None, bias: np.ndarray | None = None,
                boost: np.ndarray | None = None) -> Decoded:
    """``greedy`` for a single unconstrained row: the device's common case, with the least per-step work
    (without a bias, the argmax of the graph's own int8 logits; with one, of the real logits plus it)."""
    token, words, rows, ended = start_id, [], [], False
    tokens = np.array([start_id], np.int64)
    boost = None if boost is None else boost.copy()
    nudged = bias is not None or boost is not None
    for k in range(max_steps):
        tokens[0] = token
        logits, state = step(tokens, state)
        if nudged:
            real = to_real(logits[0]) if to_real else logits[0]
            token = int(_nudged(real, bias, boost).argmax())
            if boost is not None:
                boost[token] = 0.0
        else:
            token = int(logits[0].argmax())
        rows.append(logits[0])
        if token == end_id:
            ended = True
            break
        if k == max_steps - 1:  # the last step only takes <end> (see greedy)
            rows.pop()
            break
        words.append(token)
        if deadline is not None and time.perf_counter() > deadline:
            break
    chosen = [*words, end_id] if ended else words
    score = 0.0
    if rows:
        lp = log_softmax(to_real(np.stack(rows)) if to_real else np.stack(rows))
        score = float(lp[np.arange(len(chosen)), chosen].sum())
    return Decoded(tuple(words), score, ended)


def top_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the ``k`` largest entries of ``x``, largest first, ties by lower index: a partial sort
    (a beam's step ranks beams x vocabulary entries for 2 x beam of them; a whole sort took 5 times as long)."""
    flat = x.ravel()
    pick = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    return pick[np.lexsort((pick, -flat[pick]))]


def beam_search(step: Step, state: np.ndarray, start_id: int, end_id: int, max_steps: int,
                beam_size: int = 3, length_penalty: float = 0.0, *, min_length: int = 0,
                no_repeat_ngram: int = 0, deadline: float | None = None,
                to_real: ToReal | None = None, bias: np.ndarray | None = None,
                boost: np.ndarray | None = None) -> Decoded:
    """Beam search for one image.  ``state`` is (1, S); the step sees up to beam_size rows.
    ``max_steps`` includes the <end> step, as in ``greedy``.

    Hypotheses are ranked by their log-probability plus ``bias`` and, until a hypothesis says the word,
    ``boost`` (see ``greedy``); finished ones by that over (words + 1) ** length_penalty (0 = raw).  The
    score returned is the model's own log-probability of the caption.
    """
    _check(max_steps, beam_size)
    Hyp = tuple[list[int], float, float]  # words, ranking score, the model's own log-probability
    beams: list[Hyp] = [([], 0.0, 0.0)]
    states = state
    finished: list[Hyp] = []
    nudged = bias is not None or boost is not None
    table = to_real.table if isinstance(to_real, Dequantizer) else None

    def rank(h: Hyp) -> float:
        return h[1] / (len(h[0]) + 1) ** length_penalty

    for k in range(max_steps):
        prev = np.array([b[0][-1] if b[0] else start_id for b in beams], np.int64)
        logits, new_states = step(prev, states)
        own = log_softmax(logits, table) if table is not None else log_softmax(to_real(logits) if to_real else logits)
        if nudged:
            boosts = None
            if boost is not None:
                boosts = np.repeat(boost[None], len(beams), 0)
                for row, (words, _, _) in enumerate(beams):
                    boosts[row, words] = 0.0
            lp = _nudged(own, bias, boosts)
        else:
            lp = own.copy()
        for row, (words, _, _) in enumerate(beams):
            ban = banned(words, no_repeat_ngram) | ({end_id} if len(words) < min_length else set())
            if ban:
                lp[row, list(ban)] = -np.inf
        if k == max_steps - 1:  # the last step only ends captions whose likeliest next token is <end> (see greedy)
            finished += [(b[0], b[1] + float(lp[row, end_id]), b[2] + float(own[row, end_id]))
                         for row, b in enumerate(beams) if int(np.argmax(lp[row])) == end_id]
            break
        total = np.add(lp, np.array([b[1] for b in beams])[:, None], out=lp)  # lp is not needed after this
        flat = top_indices(total, 2 * beam_size)
        nxt, keep = [], []
        for idx in flat:
            row, tok = divmod(int(idx), total.shape[1])
            score = float(total[row, tok])
            if score == -np.inf:
                break
            mine = beams[row][2] + float(own[row, tok])
            if tok == end_id:
                finished.append((beams[row][0], score, mine))
            else:
                nxt.append((beams[row][0] + [tok], score, mine))
                keep.append(row)
            if len(nxt) == beam_size:
                break
        if not nxt:
            break
        beams, states = nxt, new_states[keep]
        # stop when no live beam can beat the best finished one (ranking scores only fall while bias <= 0
        # outside the boosts, which a live beam can still collect: so only without boosts)
        if (finished and length_penalty == 0.0 and boost is None
                and max(h[1] for h in finished) >= beams[0][1]):
            break
        if deadline is not None and time.perf_counter() > deadline:
            break
    if finished:
        best = max(finished, key=rank)
        return Decoded(tuple(best[0]), best[2], True)
    best = max(beams, key=rank)
    return Decoded(tuple(best[0]), best[2], False)


def decode(step: Step, state: np.ndarray, start_id: int, end_id: int, max_steps: int,
           options: DecodeOptions = DecodeOptions(), to_real: ToReal | None = None,
           bias: np.ndarray | None = None, boost: np.ndarray | None = None) -> Decoded:
    """One image's caption with the strategy and limits of ``options``; ``state`` is (1, S); ``bias`` and
    ``boost`` as in ``greedy``."""
    steps, deadline = options.steps(max_steps), options.deadline()
    common = dict(min_length=options.min_length, no_repeat_ngram=options.no_repeat_ngram, deadline=deadline,
                  to_real=to_real, bias=bias, boost=boost)
    if options.beam_size == 1:
        return greedy(step, state, start_id, end_id, steps, **common)[0]
    return beam_search(step, state, start_id, end_id, steps, options.beam_size, options.length_penalty, **common)

