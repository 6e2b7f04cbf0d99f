"""How sure a caption is: the model's own probability of it, and whether the frame holds a picture at all.

``confidence`` (0..1) in every ``Caption`` is the smaller of two figures:

- how well the caption is supported: the caption's mean per-token probability under the model (the
  geometric mean over its words and the <end> token: ``exp(score / (words + 1))``), mapped linearly from
  ``MODEL_FLOOR`` (0) to ``MODEL_SURE`` (1), or, when higher, the probability the ImageNet classifier gives a
  word the caption says (a grounded caption the decoder alone found unlikely, "... holding a red cat", is
  vouched for by the classifier's "cat, 0.96");
- ``image_signal``: whether the frame holds a picture, the smallest of three ramps over its grey image
  (at ``ANALYSIS`` pixels square): the spread of grey levels (a black or flat frame has none), the fine detail (a frame
  blurred to nothing has none) and fine detail against spread (sensor noise is nearly all fine detail;
  photographs stay under 0.6 of it).

The language model alone cannot tell a blank frame from a photo: it says "a man in a yellow shirt is
standing in front of a crowd" of flat grey with the same per-token probability as of a real street
(measured on coco-sample, docs/engineering.md).  The picture measures can: a live run with
``--min-confidence C`` (``LiveOptions.min_confidence``; off by default, 0.5 recommended) announces no caption
under C, and ``velm-edge caption --min-confidence C`` says "nothing recognisable" for such an image.  A photo
blurred hard but still holding colour regions is not "nothing": it keeps a middling signal.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MODEL_FLOOR, MODEL_SURE = 0.1, 0.3  # mean per-token probability mapped to 0 and 1
# Measured at ANALYSIS x ANALYSIS on coco-sample, Flickr8k's test split, the synthetic camera and generated
# blank, dark, blurred and noise frames (docs/engineering.md, "Knowing when there is nothing to say").
ANALYSIS = 112  # the grey image is looked at at this size, whatever the model's input size
SPREAD_FLOOR, SPREAD_SURE = 2.0, 8.0  # standard deviation of the grey levels (0..255): photos 14 and up
DETAIL_FLOOR, DETAIL_SURE = 0.2, 0.6  # mean |grey - grey at a quarter of the size, scaled back|: photos 0.65 and up
NOISE_SURE, NOISE_FLOOR = 0.6, 0.66  # that detail over the spread: photos at most 0.57, noise 0.68 and up
COARSE = 4  # the coarse image is this many times smaller


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at ``lo``, 1 at ``hi``, linear between (falling when ``hi`` < ``lo``)."""
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def image_signal(rgb: np.ndarray) -> float:
    """0..1: whether a uint8 image (H, W, 3) at the model's size holds a picture (see the module)."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)
    n = ANALYSIS
    grey = cv2.resize(grey, (n, n), interpolation=cv2.INTER_AREA if grey.shape[0] > n else cv2.INTER_LINEAR)
    coarse = cv2.resize(cv2.resize(grey, (n // COARSE, n // COARSE), interpolation=cv2.INTER_AREA), (n, n),
                        interpolation=cv2.INTER_LINEAR)
    spread = float(grey.std())
    detail = float(cv2.absdiff(grey, coarse).mean())
    return min(_ramp(spread, SPREAD_FLOOR, SPREAD_SURE), _ramp(detail, DETAIL_FLOOR, DETAIL_SURE),
               _ramp(detail / max(spread, 1e-6), NOISE_FLOOR, NOISE_SURE))


def model_probability(score: float, words: int) -> float:
    """The caption's geometric-mean probability per token (its words and <end>)."""
    return math.exp(score / (words + 1))


def of_caption(score: float, words: int, signal: float = 1.0, support: float = 0.0) -> float:
    """A caption's confidence from its score (sum of log-probabilities), word count, image signal and the
    classifier's support (the probability of a word it says; 0 without a classifier)."""
    return min(max(_ramp(model_probability(score, words), MODEL_FLOOR, MODEL_SURE), support), signal)
