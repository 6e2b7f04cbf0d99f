"""Training the VELM with teacher forcing: data, batches, callbacks, curve, saved model.

``train(TrainConfig(...))`` is what ``velm-convert train`` runs.  Output directory layout::

    OUT/model.keras        the best model (by validation loss), vocabulary and facts inside
    OUT/checkpoint.keras   the best weights so far, written during training (plain Keras)
    OUT/history.csv        loss / val_loss / learning rate per epoch
    OUT/curve.png          the training curve
    OUT/train.json         the configuration, data summary, timings and validation figures
"""

from __future__ import annotations

import logging
import math
import time

import keras
import numpy as np

from velm_convert import datasets, metrics
from velm_convert.config import PRETRAINED, TrainConfig
from velm_convert.malloc_tuning import KeepFreedMemory
from velm_convert.model import Velm, build, count_macs
from velm_convert.train_parts import CosineOnBudget, compile_for_captions, encode_captions, finish_run, start_run
from velm_edge.errors import OptionError
from velm_edge.runtime import preprocess

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data


def load_data(cfg: TrainConfig) -> tuple[datasets.CaptionSet, datasets.CaptionSet]:
    if cfg.dataset == "synth":
        sc = cfg.synthetic_scenes()
        train = datasets.synthetic(cfg.train_scenes, 0, sc, workers=cfg.workers, progress=cfg.progress)
        val = datasets.synthetic(cfg.val_scenes, datasets.VAL_SEED, sc, workers=cfg.workers, progress=cfg.progress)
        return train, val
    if not cfg.annotations:
        raise datasets.DatasetError(f"--annotations is required for the {cfg.dataset} dataset")
    data = datasets.load_captions(cfg.annotations, cfg.images, cfg.dataset, cfg.image_size, cfg.resize_mode,
                                  cfg.max_images, cfg.progress)
    return data.split(cfg.val_fraction, cfg.seed)


class CaptionBatches(keras.utils.PyDataset):
    """Teacher-forcing batches: inputs tokens[:-1], targets tokens[1:], pad positions weighted 0."""

    def __init__(self, images: np.ndarray, img_idx: np.ndarray, seqs: np.ndarray, batch_size: int,
                 shuffle: bool, seed: int = 0):
        super().__init__()
        self.images, self.img_idx, self.seqs = images, img_idx, seqs
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(seqs)) if shuffle else np.arange(len(seqs))

    def __len__(self) -> int:
        return math.ceil(len(self.seqs) / self.batch_size)

    def __getitem__(self, i: int):
        sel = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        seq = self.seqs[sel]
        x = {"image": preprocess.to_float(self.images[self.img_idx[sel]]), "tokens": seq[:, :-1]}
        y = seq[:, 1:]
        return x, y, (y != 0).astype(np.float32)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.seqs))


# ----------------------------------------------------------------------------- training


def strategy():
    """Several visible GPUs -> MirroredStrategy; otherwise the default (CPU or one GPU)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train(cfg: TrainConfig) -> Velm:
    if cfg.backbone in PRETRAINED:  # frozen ImageNet backbone: train the head on cached features
        from velm_convert.train_cached import train_cached

        return train_cached(cfg)
    if cfg.tags or cfg.text_captions or cfg.image_dropout or cfg.text_images != "none":
        raise OptionError("--tags (and --text-captions, --image-dropout, --text-images) need --backbone "
                          "efficientnet_lite0: its ImageNet classifier names the tags")
    if cfg.scst_epochs:
        raise OptionError("--scst-epochs trains a head on cached features: it needs --backbone efficientnet_lite0")
    run = start_run(cfg, load_data)
    train_set, val_set, vocab, mcfg = run.train, run.val, run.vocab, run.model_config
    tr_idx, tr_seq = encode_captions(train_set, vocab, cfg.max_length)
    va_idx, va_seq = encode_captions(val_set, vocab, cfg.max_length)
    train_batches = CaptionBatches(train_set.images, tr_idx, tr_seq, cfg.batch_size, True, cfg.seed)
    val_batches = CaptionBatches(val_set.images, va_idx, va_seq, cfg.batch_size, False)

    with strategy().scope():
        model = build(mcfg)
        compile_for_captions(model, cfg, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    macs = count_macs(model, mcfg)
    log.info("model: %s backbone, %d parameters, %.1f M MACs per caption", mcfg.backbone, model.count_params(),
             macs["caption"] / 1e6)
    budget = CosineOnBudget(cfg.learning_rate, cfg.epochs * len(train_batches), cfg.max_minutes)
    callbacks = [
        budget,  # first, so the checkpoint and the CSV log see the epoch's learning rate
        KeepFreedMemory(),  # TensorFlow's generator datasets otherwise halve the speed (see malloc_tuning)
        keras.callbacks.ModelCheckpoint(str(run.out / "checkpoint.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run.out / "history.csv")),
    ]
    t1 = time.monotonic()
    history = model.fit(train_batches, validation_data=val_batches, epochs=cfg.epochs, callbacks=callbacks,
                        verbose=1 if cfg.progress else 2)
    train_seconds = time.monotonic() - t1
    if budget.hit:  # stopped mid-epoch: EarlyStopping does not restore then, so take the best checkpoint
        best = run.out / "checkpoint.keras"
        if best.is_file():
            model.load_weights(best)
    velm = Velm(model, vocab, mcfg)
    val_scores = metrics.score(velm.caption(preprocess.to_float(val_set.images)), val_set.captions)
    return finish_run(velm, run, cfg, history, budget, train_seconds, len(tr_seq), macs, val_scores,
                      skipped_records=dict(train_set.skipped))
