"""Caption metrics without Java: exact match, corpus BLEU-1..4 and CIDEr-D.

Texts are compared after ``velm_edge.runtime.tokenizer.normalize`` (lower case, no punctuation).

- BLEU follows Papineni et al. 2002 at corpus level, as sacrebleu and coco-caption do without
  smoothing: clipped n-gram precisions summed over the corpus, the brevity penalty from the summed
  closest reference lengths (ties go to the shorter reference), BLEU-n the geometric mean of the
  first n precisions.  (nltk's corpus_bleu differs only for hypotheses shorter than n words, for
  which it counts one n-gram instead of none.)
- CIDEr-D follows the coco-caption scorer (Vedantam et al. 2015): tf-idf n-gram vectors (n=1..4)
  with document frequencies over the references of the evaluated set, clipped hypothesis weights,
  a Gaussian length penalty (sigma=6), averaged over n and references, times 10.  As in that
  scorer, the length used by the penalty is the number of bigrams.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from velm_edge.runtime.tokenizer import normalize

Refs = Sequence[Sequence[str]]


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _check(hyps: Sequence[str], refs: Refs) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
    if not hyps:
        raise ValueError("no captions to score")
    if any(len(r) == 0 for r in refs):
        raise ValueError("every hypothesis needs at least one reference caption")


def exact_match(hyps: Sequence[str], refs: Refs) -> float:
    """Share of hypotheses equal (after normalization) to one of their references."""
    _check(hyps, refs)
    hits = sum(normalize(h) in [normalize(r) for r in rs] for h, rs in zip(hyps, refs))
    return hits / len(hyps)


def bleu(hyps: Sequence[str], refs: Refs, max_n: int = 4) -> list[float]:
    """Corpus BLEU-1 .. BLEU-max_n (each in [0, 1])."""
    _check(hyps, refs)
    matched = np.zeros(max_n)
    total = np.zeros(max_n)
    hyp_len = ref_len = 0
    for h, rs in zip(hyps, refs):
        hw = normalize(h)
        rws = [normalize(r) for r in rs]
        hyp_len += len(hw)
        ref_len += min((len(r) for r in rws), key=lambda n: (abs(n - len(hw)), n))
        for n in range(1, max_n + 1):
            counts = _ngrams(hw, n)
            best: Counter = Counter()
            for r in rws:
                best |= _ngrams(r, n)  # max count of each n-gram over the references
            matched[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            total[n - 1] += sum(counts.values())
    if hyp_len == 0:
        return [0.0] * max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    scores = []
    for n in range(1, max_n + 1):
        p = matched[:n] / np.maximum(total[:n], 1)
        scores.append(0.0 if (p == 0).any() or (total[:n] == 0).any() else bp * math.exp(np.log(p).mean()))
    return scores


def cider_d(hyps: Sequence[str], refs: Refs, n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (mean over images; 0..10 scale, typically reported as is)."""
    _check(hyps, refs)
    scorer = CiderD(refs, n, sigma)
    return sum(scorer.score(i, normalize(h)) for i, h in enumerate(hyps)) / len(hyps)


def _grams(words: Sequence[str], n: int) -> Counter:
    return Counter({g: c for k in range(1, n + 1) for g, c in _ngrams(words, k).items()})


class CiderD:
    """CIDEr-D of one image's caption against its references, with document frequencies over ``refs`` (every
    image's references): ``cider_d``'s corpus mode, and the reward of self-critical training (``velm_convert.scst``),
    where the references' vectors are computed once and each caption is scored as it is sampled."""

    def __init__(self, refs: Refs, n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        ref_grams = [[_grams(normalize(r), n) for r in rs] for rs in refs]
        self.df: Counter = Counter()
        for grams in ref_grams:
            self.df.update(set().union(*grams))
        self.log_n_docs = math.log(len(refs))
        self.refs = [[self._vector(g) for g in grams] for grams in ref_grams]

    def _vector(self, counts: Counter):
        vec = [dict() for _ in range(self.n)]
        for g, tf in counts.items():
            vec[len(g) - 1][g] = tf * (self.log_n_docs - math.log(max(1.0, self.df[g])))
        norms = [math.sqrt(sum(v * v for v in d.values())) for d in vec]
        length = sum(tf for g, tf in counts.items() if len(g) == 2)
        return vec, norms, length

    def score(self, image: int, words: Sequence[str]) -> float:
        """CIDEr-D of ``words`` (a normalized caption) for the image at index ``image`` of ``refs``."""
        hv, hn, hl = self._vector(_grams(words, self.n))
        acc = np.zeros(self.n)
        for rv, rn, rl in self.refs[image]:
            penalty = math.exp(-((hl - rl) ** 2) / (2 * self.sigma**2))
            for k in range(self.n):
                dot = sum(min(w, rv[k].get(g, 0.0)) * rv[k].get(g, 0.0) for g, w in hv[k].items())
                if hn[k] and rn[k]:
                    dot /= hn[k] * rn[k]
                acc[k] += dot * penalty
        return 10.0 * float(acc.mean()) / len(self.refs[image])


def score(hyps: Sequence[str], refs: Refs) -> dict[str, float]:
    """All metrics at once: exact_match, bleu1..bleu4, cider (rounded to 4 places)."""
    b = bleu(hyps, refs)
    out = {"images": len(hyps), "exact_match": exact_match(hyps, refs)}
    out.update({f"bleu{i + 1}": v for i, v in enumerate(b)})
    out["cider"] = float(cider_d(hyps, refs))
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per named result, one column per metric."""
    cols = ["exact_match", "bleu1", "bleu2", "bleu3", "bleu4", "cider"]
    width = max([len(k) for k in rows] + [6])
    lines = [f"{'':<{width}}  " + "  ".join(f"{c:>11}" for c in cols)]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{r.get(c, float('nan')):>11.4f}" for c in cols))
    return "\n".join(lines)
