"""What both training paths share (``train``: the whole model; ``train_cached``: the head on cached
features): the run's start (folder, seed, data, vocabulary), captions as token ids, the learning-rate
schedule over an epoch or time budget, and the training curve."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from velm_convert import datasets
from velm_convert.config import TrainConfig
from velm_edge.runtime.tokenizer import Vocab


def encode_captions(data: datasets.CaptionSet, vocab: Vocab, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """All (image index, token sequence) training pairs: every reference caption is a pair."""
    img_idx = np.array([i for i, caps in enumerate(data.captions) for _ in caps], np.int64)
    seqs = np.array([vocab.encode(c, max_length) for caps in data.captions for c in caps], np.int32)
    return img_idx, seqs


class CosineOnBudget(keras.callbacks.Callback):
    """Cosine learning-rate decay to ``alpha`` x the start over whichever budget runs out first, steps or
    time, and a stop when the time is up.  With a time limit the rate reaches its floor when training
    stops on any machine, fast or slow, instead of being cut off halfway down the curve."""

    def __init__(self, learning_rate: float, total_steps: int, minutes: float | None, alpha: float = 0.05):
        super().__init__()
        self.lr0, self.total, self.alpha = learning_rate, max(1, total_steps), alpha
        self.limit = None if minutes is None else minutes * 60.0
        self.start, self.step, self.hit = None, 0, False

    def progress(self) -> float:
        p = self.step / self.total
        if self.limit is not None:
            p = max(p, (time.monotonic() - self.start) / self.limit)
        return min(1.0, p)

    def rate(self) -> float:
        return self.lr0 * (self.alpha + (1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * self.progress())))

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate())

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.limit is not None and time.monotonic() - self.start > self.limit:
            self.hit = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.rate())


def start_run(cfg: TrainConfig, load, text_captions: list[str] = ()) -> tuple:
    """What every training run starts with: the output folder, the seed, the data (``load(cfg)`` -> training
    and validation sets, timed), the vocabulary of the training captions (and of ``text_captions``, captions
    without images) and the model configuration."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    t0 = time.monotonic()
    train_set, val_set = load(cfg)
    t_data = time.monotonic() - t0
    captions = [c for caps in train_set.captions for c in caps] + list(text_captions)
    vocab = Vocab.build(captions, cfg.min_count, cfg.max_vocab)
    return out, train_set, val_set, t_data, vocab, cfg.model_config(len(vocab))


def plot_curve(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, label in (("loss", "training loss"), ("val_loss", "validation loss")):
        if history.get(key):
            ax.plot(epochs, history[key], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy per token")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if history.get("dev_bleu4"):
        right = ax.twinx()
        right.plot(epochs, np.asarray(history["dev_bleu4"]) * 100, color="tab:green", marker="s",
                   label="dev BLEU-4 (greedy)")
        right.set_ylabel("dev BLEU-4")
        right.legend(loc="upper center")
    ax.legend()
    ax.set_title("VELM training")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
