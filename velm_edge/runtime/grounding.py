"""Grounding: what the ImageNet classifier in the vision graph sees, as tags and as a nudge to the decoder
(``WordTable``), and the same for the objects the bundle's detector finds (``DetectedWords``).

A grounded bundle's vision graph also outputs ``classes``: ImageNet-1k class probabilities (a softmax;
int8 in int8 bundles), computed by the classifier head the backbone was trained with.  Its
``classes.json`` gives each class a label and, where the vocabulary can say it, a caption word
(Egyptian cat -> cat, every dog breed -> dog; written at export by ``velm_convert.imagenet_words``).

From one image's probabilities:

- ``tags``: the most probable classes with their label, caption word and score, for programs that act
  on "cat, 0.81" without parsing a sentence;
- ``bias``: what steers the decoder, in logit units.  While some word's classes together hold at least
  ``DecodeOptions.ground`` of the probability (a *confident* word), the other words the classifier knows but
  does not see are lowered by ``Nudge.rival_penalty`` at every step (a cat photo is not captioned "dog");
  and when the caption still names no confident word, the Captioner decodes it again (a beam of at most 2)
  with each confident word raised by ``Nudge.boost`` times its probability until it is said; for a decoder
  trained on tags (the vision graph also outputs ``tag_feature`` and ``tag_state``) that second decoding
  starts from the tags alone, as the decoder learnt captions without an image.  Raising only
  then keeps the decoder's own wording wherever it already named the object ("a black dog", not "a dog").
  Words the classifier has no class for (man, woman, water, grass ...) are never touched: people, scenes
  and actions stay the decoder's call.  ``<unk>`` is always forbidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from velm_edge.errors import BundleError


@dataclass(frozen=True)
class Tag:
    label: str  # the ImageNet class name ("Egyptian cat")
    word: str | None  # the caption word it grounds ("cat"), None when the vocabulary has none
    score: float  # the class probability

    def to_json(self) -> dict:
        return {"label": self.label, "word": self.word, "score": round(self.score, 3)}


@dataclass(frozen=True)
class Nudge:
    """How hard a confident word steers the caption (its threshold is ``DecodeOptions.ground``)."""
    boost: float = 6.0  # logit units added to a confident word, times its probability, until it is said
    rival_penalty: float = 4.0  # logit units taken from the classifier's other words while a word is confident
    rival_ceiling: float = 0.05  # ...unless the classifier gives them at least this probability
    surest: float = 0.6  # a caption that leaves out the object the detector is surest of, at least this sure, is
    # decoded again (an object it sees should be named: "a dog running through the grass" for a clock tower is not)


NUDGE = Nudge()


class WordTable:
    """``classes.json`` against the vocabulary: labels, and each class's word as a token id (-1: none)."""

    def __init__(self, table: dict, vocab, where: str):
        classes = table.get("classes") if isinstance(table, dict) else None
        if not isinstance(classes, list) or not classes:
            raise BundleError(f"{where}: expected an object with a non-empty 'classes' list")
        labels, ids = [], []
        for i, entry in enumerate(classes):
            label, word = (entry.get("label"), entry.get("word")) if isinstance(entry, dict) else (None, None)
            if not isinstance(label, str) or not (word is None or isinstance(word, str)):
                raise BundleError(f"{where}: classes[{i}] must have a string 'label' and a string or null 'word'")
            token = vocab.id(word) if word is not None else -1
            if word is not None and token == vocab.unk_id:
                raise BundleError(f"{where}: classes[{i}] ({label}) grounds {word!r}, which is not in vocab.txt")
            labels.append(label)
            ids.append(token)
        self.labels, self.class_words = labels, [None if t < 0 else vocab.tokens[t] for t in ids]
        self.token = np.array(ids, np.int64)
        self._grounding = np.flatnonzero(self.token >= 0)  # the classes that ground a word
        self.sayable = np.unique(self.token[self._grounding])  # the words the classifier can speak for
        self.unk_id, self.vocab_size = vocab.unk_id, len(vocab)
        self.nudge = NUDGE  # how hard a confident word steers (benchmarks/wider_world.py --nudge compares others)

    @classmethod
    def from_bytes(cls, data: bytes, vocab, where: str) -> WordTable:
        try:
            table = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{where}: not valid JSON ({e})") from None
        return cls(table, vocab, where)

    def __len__(self) -> int:
        return len(self.labels)

    def tags(self, probs: np.ndarray, top: int = 5) -> tuple[Tag, ...]:
        """The ``top`` most probable classes of one image's probabilities (C,)."""
        order = np.argsort(-probs, kind="stable")[:top]
        return tuple(Tag(self.labels[i], self.class_words[i], float(probs[i])) for i in order)

    def word_scores(self, probs: np.ndarray) -> np.ndarray:
        """(V,) probability of each vocabulary word: the sum over the classes that ground it."""
        known = self._grounding
        return np.bincount(self.token[known], weights=probs[known], minlength=self.vocab_size)

    def word_matrix(self) -> np.ndarray:
        """(C, W) float32: 1 where class c grounds the w-th word of ``sayable``, so probs @ it are the sayable words'
        scores (``word_scores`` restricted to them); a decoder trained on tags computes exactly this."""
        matrix = np.zeros((len(self), len(self.sayable)), np.float32)
        matrix[self._grounding, np.searchsorted(self.sayable, self.token[self._grounding])] = 1.0
        return matrix

    def bias(self, probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
        """(bias, boost) for one image's class probabilities (C,), both (V,) in logit units: ``bias`` holds
        for every step, ``boost`` (for a second decoding) until the word is said (None: no word is confident).
        See the module."""
        bias = no_grounding(self.vocab_size, self.unk_id)
        scores = self.word_scores(probs)
        confident = np.flatnonzero(scores >= threshold)
        if not confident.size:
            return bias, None
        nudge = self.nudge
        rivals = self.sayable[scores[self.sayable] < nudge.rival_ceiling]
        bias[rivals] -= nudge.rival_penalty
        boost = np.zeros(self.vocab_size)
        boost[confident] = nudge.boost * scores[confident]
        return bias, boost


class DetectedWords:
    """The detector's labels against the vocabulary (the manifest's ``detector.words``: label -> caption words).

    From one frame's detections, ``apply`` gives what the Captioner's second decoding uses:
    - the words of a label listed in ``detector.unseen_banned`` ("person") are banned while the detector sees no
      such object: a caption that invents people the detector did not find is decoded again without them;
    - the words of every label it sees join the boost, by ``Nudge.boost`` times the detection's score, so a
      caption that names none of the objects is decoded again with them raised;
    - the words of the object it is surest of, when at least ``Nudge.surest`` sure: a caption that names none of
      them is decoded again too, even if it names another object."""

    def __init__(self, section: dict, vocab, where: str):
        words, banned = section.get("words", {}), section.get("unseen_banned", [])
        labels = set(section["labels"])
        if not isinstance(words, dict) or not set(words) <= labels or not isinstance(banned, list) \
                or not all(isinstance(b, str) and b in labels for b in banned):
            raise BundleError(f"{where}: detector.words must map labels to word lists and detector.unseen_banned "
                              f"list labels, among the detector's labels")
        self.ids: dict[str, np.ndarray] = {}
        for label, ws in words.items():
            if not isinstance(ws, list) or not all(isinstance(w, str) for w in ws):
                raise BundleError(f"{where}: detector.words[{label!r}] must be a list of words")
            ids = [vocab.id(w) for w in ws]
            if vocab.unk_id in ids:
                raise BundleError(f"{where}: detector.words[{label!r}] holds a word not in vocab.txt")
            self.ids[label] = np.array(ids, np.int64)
        self.banned = tuple(banned)
        self.vocab_size, self.nudge = len(vocab), NUDGE

    def apply(self, detections, boost: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(banned token ids, boost, surest token ids) for one frame's detections (best first): ``boost`` (from
        ``WordTable.bias``, or None) with the seen labels' words raised, the words of ``unseen_banned`` labels it
        does not see, and the words of the best detection if it reaches ``Nudge.surest`` (else none)."""
        surest = np.zeros(0, np.int64)
        if detections and detections[0].score >= self.nudge.surest and detections[0].label in self.ids:
            surest = self.ids[detections[0].label]
        seen: dict[str, float] = {}
        for d in detections:
            seen[d.label] = max(seen.get(d.label, 0.0), d.score)
        unseen = [self.ids[label] for label in self.banned if label not in seen and label in self.ids]
        for label, score in seen.items():
            if label in self.ids:
                boost = np.zeros(self.vocab_size) if boost is None else boost
                boost[self.ids[label]] = np.maximum(boost[self.ids[label]], self.nudge.boost * score)
        return (np.concatenate(unseen) if unseen else np.zeros(0, np.int64)), boost, surest


def no_grounding(vocab_size: int, unk_id: int) -> np.ndarray:
    """The bias of a bundle without classes: only ``<unk>`` forbidden."""
    bias = np.zeros(vocab_size)
    bias[unk_id] = -np.inf
    return bias
