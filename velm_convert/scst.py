"""Self-critical sequence training of a head on cached features, after its cross-entropy epochs.

Cross-entropy teaches the decoder the next word of a human caption; at use it continues its own words.
Self-critical training (Rennie et al., "Self-critical Sequence Training for Image Captioning", CVPR 2017)
closes that gap: for each training image the decoder samples ``samples`` captions, each is scored by
CIDEr-D against the image's references (``metrics.CiderD``, document frequencies of the training split),
and each caption's log-probability is pushed up by how much its score beats the mean of the image's other
samples (the baseline of Luo, "A Better Variant of Self-Critical Sequence Training", 2020).  In the same
steps the training sequences without an image (COCO's text-only captions, and the image captions trained
with the image withheld) keep their cross-entropy loss, so the start from the tags alone that the second
decoding uses does not drift.  Only the head's weights change: the export is the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from velm_convert.datasets import progress_bar
from velm_convert.metrics import CiderD
from velm_edge.runtime.tokenizer import Vocab

log = logging.getLogger(__name__)


class Sampler:
    """Captions sampled from a head (``build_on_features``'s model), sharing its layers: the vision part once,
    then the GRU cell step by step, ``<pad>``, ``<start>`` and ``<unk>`` never drawn."""

    def __init__(self, head: keras.Model, vocab: Vocab, steps: int):
        image_inputs = {k: v for k, v in head.input.items() if k != "tokens"}
        feature = head.get_layer("grounded_feature" if "tags" in image_inputs else "feature").output
        self.vision = keras.Model(image_inputs, [feature, head.get_layer("init_state").output])
        self.embedding, self.cell = head.get_layer("embedding"), head.get_layer("gru").cell
        self.logits = head.get_layer("logits")
        banned = np.zeros(len(vocab), np.float32)
        banned[[vocab.pad_id, vocab.start_id, vocab.unk_id]] = -1e9
        self.banned, self.start, self.steps = tf.constant(banned), vocab.start_id, steps
        self._sample = tf.function(self._draw, reduce_retracing=True)

    def _draw(self, inputs: dict, samples: int, greedy: bool):
        feature, state = self.vision(inputs, training=False)
        feature, state = tf.repeat(feature, samples, axis=0), tf.repeat(state, samples, axis=0)
        token = tf.fill([tf.shape(feature)[0]], self.start)
        drawn = tf.TensorArray(tf.int32, size=self.steps)
        for t in tf.range(self.steps):
            x = tf.concat([self.embedding(token), feature], axis=-1)
            state, _ = self.cell(x, [state], training=False)
            logits = self.logits(state) + self.banned
            token = tf.argmax(logits, -1, output_type=tf.int32) if greedy else \
                tf.random.categorical(logits, 1, dtype=tf.int32)[:, 0]
            drawn = drawn.write(t, token)
        return tf.transpose(drawn.stack())

    def __call__(self, inputs: dict[str, np.ndarray], samples: int, greedy: bool = False) -> np.ndarray:
        """(N * samples, steps) token ids, each image's samples together; after ``<end>`` the rest is padding."""
        tokens = self._sample({k: tf.constant(v) for k, v in inputs.items()}, samples, greedy).numpy()
        return ended(tokens, Vocab.end_id, Vocab.pad_id)


def ended(tokens: np.ndarray, end_id: int, pad_id: int) -> np.ndarray:
    """``tokens`` with everything after each row's first ``end_id`` set to ``pad_id``."""
    after = np.cumsum(tokens == end_id, axis=1) - (tokens == end_id) > 0
    return np.where(after, pad_id, tokens)


def advantages(rewards: np.ndarray) -> np.ndarray:
    """(N, K) rewards of K samples per image -> each one's reward minus the mean of the image's other K - 1."""
    k = rewards.shape[1]
    return rewards - (rewards.sum(1, keepdims=True) - rewards) / (k - 1)


def finetune(head: keras.Model, images: dict[str, np.ndarray], refs: Sequence[Sequence[str]], vocab: Vocab,
             steps: int, without_image: tuple[dict, np.ndarray, np.ndarray] | None, loss_fn: Callable,
             epochs: int, learning_rate: float, samples: int = 5, batch_size: int = 32, seed: int = 0,
             withheld: float = 0.0, after_epoch: Callable[[int, dict], None] | None = None,
             progress: bool = False) -> list[dict]:
    """Self-critical epochs over ``images`` (each input of the head but "tokens", one row per image; ``refs``:
    its captions), with ``without_image`` ((inputs, targets, weights) of the sequences trained without an image)
    kept on ``loss_fn`` (the cross-entropy of the first epochs).  ``withheld``: the share of the photos whose
    captions are sampled with the image withheld (pooled features zero), from their tags alone, as the second
    decoding starts, so that start learns from the references too.  Returns per epoch the mean sampled CIDEr-D
    and the mean greedy one; ``after_epoch(epoch, that)`` is called after each (e.g. to score the dev split)."""
    if samples < 2:
        raise ValueError("self-critical training needs at least 2 samples per image for its baseline")
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    sampler, reward = Sampler(head, vocab, steps), CiderD(refs)
    optimizer = keras.optimizers.Adam(learning_rate, clipnorm=5.0)
    weights = head.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(inputs, tokens, adv, xe_inputs, xe_targets, xe_weights):
        with tf.GradientTape() as tape:
            logits = head(inputs, training=False)
            logp = tf.nn.log_softmax(logits)
            mask = tf.cast(tokens != vocab.pad_id, logp.dtype)
            taken = tf.gather(logp, tokens, batch_dims=2)
            loss = -tf.reduce_mean(adv * tf.reduce_sum(taken * mask, 1))
            if xe_inputs is not None:
                per_token = loss_fn(xe_targets, head(xe_inputs, training=True))
                loss += tf.reduce_sum(per_token * xe_weights) / tf.maximum(tf.reduce_sum(xe_weights), 1.0)
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    n = len(refs)
    history = []
    for epoch in range(epochs):
        order = rng.permutation(n)
        drawn, greedy = [], []
        bar = progress_bar(n, f"self-critical epoch {epoch + 1}/{epochs}", progress)
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            rows = {k: v[idx] for k, v in images.items()}
            rows["pooled"][rng.random(len(idx)) < withheld] = 0.0
            tokens = sampler(rows, samples)
            image_of = np.repeat(idx, samples)
            r = np.array([reward.score(i, vocab.decode(row).split()) for i, row in zip(image_of, tokens)])
            r = r.reshape(len(idx), samples)
            drawn.append(r.mean())
            if b % (20 * batch_size) == 0:  # now and then the greedy caption's CIDEr-D, to watch the training
                g = sampler(rows, 1, greedy=True)
                greedy += [reward.score(i, vocab.decode(row).split()) for i, row in zip(idx, g)]
            start = np.full((len(tokens), 1), vocab.start_id, np.int32)
            inputs = {k: np.repeat(v, samples, axis=0) for k, v in rows.items()}
            inputs["tokens"] = np.concatenate([start, tokens[:, :-1]], axis=1).astype(np.int32)
            xe = (None, None, None)
            if without_image is not None:
                x, y, w = without_image
                pick = rng.integers(0, len(y), 2 * batch_size)
                xe = ({k: v[pick] for k, v in x.items()}, y[pick], w[pick])
            step(inputs, tokens.astype(np.int32), advantages(r).reshape(-1).astype(np.float32), *xe)
            bar.update(len(idx))
        bar.close()
        facts = {"sampled_cider": float(np.mean(drawn)), "greedy_cider": float(np.mean(greedy))}
        log.info("self-critical epoch %d: sampled CIDEr-D %.3f, greedy %.3f (training photos)", epoch + 1,
                 facts["sampled_cider"], facts["greedy_cider"])
        if after_epoch is not None:
            after_epoch(epoch, facts)
        history.append(facts)
    return history
