"""What both training paths share (``train``: the whole model; ``train_cached``: the head on cached
features): the run's start (folder, seed, data, vocabulary: a ``Run``), captions as token ids, the optimizer,
the learning-rate schedule over an epoch or time budget, and the run's end (the model's facts, the .keras file,
train.json and the training curve)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from velm_convert import datasets
from velm_convert.config import ModelConfig, TrainConfig
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


@dataclass(frozen=True)
class Run:
    """What a training run starts from (``start_run``)."""
    out: Path  # the output folder
    train: Any  # the training set: a datasets.CaptionSet, or a train_cached.FeatureSet
    val: Any  # the validation (dev) set, of the same kind
    data_seconds: float  # how long loading them took
    vocab: Vocab
    model_config: ModelConfig


def start_run(cfg: TrainConfig, load, text_captions: list[str] = ()) -> Run:
    """What every training run starts with: the output folder, the seed, the data (``load(cfg)`` -> training
    and validation sets, timed), the vocabulary of the training captions (and of ``text_captions``, captions
    without images) and the model configuration."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    t0 = time.monotonic()
    train_set, val_set = load(cfg)
    data_seconds = time.monotonic() - t0
    captions = [c for caps in train_set.captions for c in caps] + list(text_captions)
    vocab = Vocab.build(captions, cfg.min_count, cfg.max_vocab)
    return Run(out, train_set, val_set, data_seconds, vocab, cfg.model_config(len(vocab)))


def compile_for_captions(model: keras.Model, cfg: TrainConfig, loss) -> None:
    """Both paths' optimizer (Adam, gradients clipped to norm 5) and metric (token accuracy on real tokens)."""
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate, clipnorm=5.0), loss=loss,
                  weighted_metrics=["sparse_categorical_accuracy"])


def finish_run(velm, run: Run, cfg: TrainConfig, history, budget: CosineOnBudget, train_seconds: float,
               train_pairs: int, macs: dict, val_metrics: dict, **facts):
    """The end of every run: the model's facts (``velm.info``, with ``facts`` of the path's own), the .keras
    file, train.json and the training curve in the output folder."""
    velm.info = {
        "dataset": cfg.dataset, "train_source": run.train.source, "val_source": run.val.source,
        "train_images": len(run.train.captions), "train_pairs": int(train_pairs), "val_images": len(run.val.captions),
        "data_seconds": round(run.data_seconds, 1), "train_seconds": round(train_seconds, 1),
        "epochs_run": len(history.history.get("loss", [])), "stopped_by_time_limit": budget.hit,
        "parameters": int(velm.model.count_params()), "macs": macs, "val_metrics": val_metrics, **facts,
        "train_config": dataclasses.asdict(cfg),
    }
    velm.save(run.out / "model.keras")
    (run.out / "train.json").write_text(json.dumps(velm.info, indent=2))
    plot_curve(history.history, run.out / "curve.png")
    return velm


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
