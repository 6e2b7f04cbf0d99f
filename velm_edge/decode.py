"""Caption decoding as pure functions over a ``step`` callable.

``step(tokens, states) -> (logits, new_states)`` advances a batch of decoder rows by one token:
``tokens`` is an int array (B,), ``states`` a float array (B, S); ``logits`` is (B, V).  Whatever
holds the image feature (a Keras model, a TFLite interpreter, a test stub) lives inside the
callable, so these functions run the same on the workstation and on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Step = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Decoded:
    tokens: tuple[int, ...]  # generated ids, without <start>, up to and excluding <end>
    score: float  # sum of log-probabilities of the generated tokens (and <end>, if reached)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def greedy(step: Step, states: np.ndarray, start_id: int, end_id: int, max_steps: int) -> list[Decoded]:
    """Greedy decoding of a batch of rows (one row per image), all rows stepped together."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    n = states.shape[0]
    tokens = np.full(n, start_id, np.int64)
    out: list[list[int]] = [[] for _ in range(n)]
    scores = np.zeros(n)
    done = np.zeros(n, bool)
    for _ in range(max_steps):
        logits, states = step(tokens, states)
        tokens = np.argmax(logits, axis=-1)
        lp = log_softmax(logits)[np.arange(n), tokens]
        scores += np.where(done, 0.0, lp)
        for i in np.flatnonzero(~done):
            if tokens[i] == end_id:
                done[i] = True
            else:
                out[i].append(int(tokens[i]))
        if done.all():
            break
    return [Decoded(tuple(t), float(s)) for t, s in zip(out, scores)]


def beam_search(step: Step, state: np.ndarray, start_id: int, end_id: int, max_steps: int,
                beam_size: int = 3, length_penalty: float = 0.0) -> Decoded:
    """Beam search for one image.  ``state`` is (1, S); the step sees up to beam_size rows.

    Finished hypotheses are ranked by score / length**length_penalty (0 = raw log-probability).
    """
    if beam_size < 1 or max_steps < 1:
        raise ValueError(f"beam_size and max_steps must be >= 1, got {beam_size}, {max_steps}")
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    states = state
    finished: list[tuple[list[int], float]] = []

    def rank(h: tuple[list[int], float]) -> float:
        return h[1] / max(len(h[0]) + 1, 1) ** length_penalty

    for _ in range(max_steps):
        last = np.array([b[0][-1] if b[0] else start_id for b in beams], np.int64)
        logits, new_states = step(last, states)
        lp = log_softmax(logits)
        total = lp + np.array([b[1] for b in beams])[:, None]
        flat = np.argsort(-total, axis=None)[: 2 * beam_size]
        nxt, keep = [], []
        for idx in flat:
            row, tok = divmod(int(idx), total.shape[1])
            hyp = (beams[row][0] + [tok], float(total[row, tok]))
            if tok == end_id:
                finished.append((beams[row][0], hyp[1]))
            else:
                nxt.append(hyp)
                keep.append(row)
            if len(nxt) == beam_size:
                break
        if not nxt:
            break
        # stop when no live beam can beat the best finished one (scores only fall)
        if finished and length_penalty == 0.0 and max(h[1] for h in finished) >= max(h[1] for h in nxt):
            break
        beams, states = nxt, new_states[keep]
    if not finished:
        finished = beams
    best = max(finished, key=rank)
    return Decoded(tuple(best[0]), best[1])
