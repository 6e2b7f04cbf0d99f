"""Training the decoder on a frozen pretrained backbone, from features cached on disk.

``velm-convert train --backbone efficientnet_lite0 ...`` runs this instead of ``velm_convert.train``'s
image pipeline: the backbone's pooled features of every image are computed once (``feature_cache``),
then only the head (feature projection, initial state, embedding, GRU, logits) trains, on those
vectors, in minutes on 2 cores.  After every epoch the dev split is captioned (greedy) and scored;
the epoch with the best dev BLEU-4 is the model kept.  With ``--scst-epochs N``, N self-critical epochs
(``velm_convert.scst``) follow from that epoch, each scored the same way.  At the end the trained head is put on top of
the real backbone, so ``model.keras`` takes images like every other VELM and exports the same way.

Writes the same files as ``velm_convert.train`` (model.keras, history.csv, curve.png, train.json).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np

from velm_convert import datasets, metrics
from velm_convert.config import TrainConfig
from velm_convert.feature_cache import DEFAULT_DIR, FeatureCache, file_sha256
from velm_convert.model import Velm, build, build_on_features, count_macs, set_tagger, transfer_head
from velm_convert.train_parts import CosineOnBudget, compile_for_captions, encode_captions, finish_run, start_run
from velm_edge.errors import OptionError
from velm_edge.runtime.tokenizer import Vocab, normalize

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) pooled backbone outputs
    captions: list[list[str]]
    source: str
    files: list[Path]


def backbone_encoder(cfg: TrainConfig):
    """(pretrained Keras backbone, the cache for its features) for this configuration."""
    from velm_convert import efficientnet_lite

    net = efficientnet_lite.backbone(cfg.image_size, weights=cfg.backbone_weights)
    weights = Path(cfg.backbone_weights) if cfg.backbone_weights else efficientnet_lite.weights_path()
    cache = FeatureCache(cfg.feature_cache or DEFAULT_DIR, cfg.backbone, cfg.image_size, cfg.resize_mode,
                         file_sha256(weights))
    return net, cache


def feature_sets(cfg: TrainConfig) -> tuple[FeatureSet, FeatureSet]:
    """Training and validation (dev) features: the split files when there are any, else a random split."""
    lay = datasets.layout(cfg.dataset, cfg.annotations, cfg.images, cfg.splits)
    if lay.splits is not None:
        parts = [datasets.file_set(lay, "train", cfg.max_images), datasets.file_set(lay, "dev")]
    else:
        parts = list(datasets.file_set(lay, None, cfg.max_images).split(cfg.val_fraction, cfg.seed))
    net, cache = backbone_encoder(cfg)
    out = []
    for fs in parts:
        feats, ok = cache.features(fs.files, lambda x: net.predict(x, batch_size=32, verbose=0),
                                   progress=cfg.progress)
        if not ok:
            raise datasets.DatasetError(f"{fs.source}: none of its {len(fs)} images could be decoded")
        if len(ok) < len(fs):
            log.warning("%s: %d unreadable images skipped", fs.source, len(fs) - len(ok))
        out.append(FeatureSet(feats, [fs.captions[i] for i in ok], fs.source, [fs.files[i] for i in ok]))
    return out[0], out[1]


def smoothed_loss(label_smoothing: float):
    """Cross-entropy from logits with integer targets, ``label_smoothing`` of the mass spread uniformly."""
    ops = keras.ops

    def loss(y_true, logits):
        logp = ops.log_softmax(logits, axis=-1)
        nll = -ops.take_along_axis(logp, ops.expand_dims(ops.cast(y_true, "int32"), -1), axis=-1)[..., 0]
        return (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(logp, axis=-1)

    return loss


class DevScore(keras.callbacks.Callback):
    """After each epoch: greedy captions of the dev features, BLEU-4 and CIDEr-D into the logs; keeps the
    weights of the best BLEU-4 and stops after ``patience`` epochs without a better one.  ``inputs``: what the
    head's vision part takes for the dev images (their features, or {"pooled", "tags"})."""

    def __init__(self, dev: FeatureSet, inputs, vocab: Vocab, cfg, patience: int):
        super().__init__()
        self.dev, self.inputs, self.vocab, self.cfg, self.patience = dev, inputs, vocab, cfg, patience
        self.best, self.best_epoch, self.best_weights, self.scores = -1.0, -1, None, {}

    def on_epoch_end(self, epoch, logs=None):
        s = self.consider(epoch)
        if logs is not None:
            logs["dev_bleu4"], logs["dev_cider"] = s["bleu4"], s["cider"]
        if epoch != self.best_epoch and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def consider(self, epoch: int, what: str = "epoch") -> dict:
        """Score the model's weights now (after ``epoch``, counted from 0) and keep them if they are the best."""
        s = metrics.score(Velm(self.model, self.vocab, self.cfg).caption(self.inputs), self.dev.captions)
        log.info("%s %d: dev BLEU-4 %.4f, CIDEr-D %.4f", what, epoch + 1, s["bleu4"], s["cider"])
        if s["bleu4"] > self.best:
            self.best, self.best_epoch, self.scores = s["bleu4"], epoch, s
            self.best_weights = self.model.get_weights()
        return s


@dataclasses.dataclass
class Tagger:
    """What a decoder conditioned on tags needs: its tag words, the ImageNet head and the class -> word matrix."""
    words: tuple[str, ...]
    classifier: tuple[np.ndarray, np.ndarray]  # kernel (D, 1000), bias (1000,)
    matrix: np.ndarray  # (1000, K)

    @classmethod
    def for_vocab(cls, vocab: Vocab, backbone_weights: str | None = None) -> Tagger:
        from velm_convert import efficientnet_lite, imagenet_words
        from velm_edge.runtime.grounding import WordTable

        table = WordTable(imagenet_words.word_table(set(vocab.tokens[4:])), vocab, "ImageNet class words")
        return cls(tuple(vocab.tokens[t] for t in table.sayable), efficientnet_lite.classifier(backbone_weights),
                   table.word_matrix())

    def tags(self, pooled: np.ndarray) -> np.ndarray:
        """(N, K) tag scores of pooled backbone outputs (N, D): what the exported vision graph computes."""
        kernel, bias = self.classifier
        logits = pooled @ kernel + bias
        probs = np.exp(logits - logits.max(1, keepdims=True))
        return (probs / probs.sum(1, keepdims=True)) @ self.matrix

    def text_tags(self, captions: list[str], image_tags: np.ndarray, rng: np.random.Generator,
                  floor: np.ndarray | None = None) -> np.ndarray:
        """(N, K) tags for captions without an image, as a classifier might give them: each tag word the caption
        says gets a score between 0.15 and 0.95, a quarter of them are missed, and under them lies a quarter of
        the tags of a training image (``floor``: which, one per caption; default random): the low scores of
        unrelated classes."""
        index = {w: k for k, w in enumerate(self.words)}
        if floor is None:
            floor = rng.integers(0, len(image_tags), len(captions))
        out = 0.25 * image_tags[floor]
        for i, caption in enumerate(captions):
            for w in {w for w in normalize(caption) if w in index}:
                if rng.random() >= 0.25:
                    out[i, index[w]] = max(out[i, index[w]], rng.uniform(0.15, 0.95))
        return out.astype(np.float32)


def text_detected(captions: list[str], labels: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """(N, 2L) detections as tags (``detect.as_tags``) for captions without an image, as the detector might give
    them: each object the caption names is seen with a score between 0.4 and 0.95 and missed one time in six, and
    one in three of the "two or more" it says is missed too."""
    from velm_convert.mentions import counted

    index = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(captions), 2 * len(labels)), np.float32)
    for n, caption in enumerate(captions):
        for category, count in counted(caption).items():
            if category in index and rng.random() >= 1 / 6:
                out[n, index[category]] = rng.uniform(0.4, 0.95)
                if count > 1 and rng.random() >= 1 / 3:
                    out[n, len(labels) + index[category]] = 1.0
    return out


def text_captions(path: str | Path) -> list[str]:
    """The 'caption' column of a CSV of captions without images."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise datasets.DatasetError(f"--text-captions {path}: no such file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "caption" not in (reader.fieldnames or []):
            raise datasets.DatasetError(f"--text-captions {path}: needs a 'caption' column, has {reader.fieldnames}")
        return [row["caption"] for row in reader if row["caption"].strip()]


def matched_images(texts: list[str], image_captions: list[list[str]], rng: np.random.Generator) -> np.ndarray:
    """For each text caption, a random image whose captions agree with it on whether people are in it."""
    from velm_convert.mentions import mentioned, shown

    has_people = np.array(["person" in shown(caps) for caps in image_captions])
    pools = {flag: np.flatnonzero(has_people == flag) for flag in (False, True)}
    if not all(len(p) for p in pools.values()):
        raise datasets.DatasetError("--text-images matched needs training photos both with and without people")
    return np.array([rng.choice(pools["person" in mentioned(t)]) for t in texts])


def with_tags(x: dict, seq: np.ndarray, idx: np.ndarray, fs: FeatureSet, image_tags: np.ndarray, texts: list[str],
              tagger: Tagger, vocab: Vocab, cfg: TrainConfig,
              detected: tuple[np.ndarray, tuple[str, ...]] | None = None) -> tuple[dict, np.ndarray]:
    """The training pairs of a decoder conditioned on tags: the image pairs ``x`` (pooled, tokens; of the images
    ``idx`` of ``fs``) with their images' tags (and ``detected``: the images' detections as tags, and the
    detector's labels), ``cfg.image_dropout`` of them with the image withheld, then the ``texts``, each without an
    image or with a matched one (``cfg.text_images``)."""
    rng = np.random.default_rng(cfg.seed)
    tags = image_tags[idx]
    pooled = x["pooled"]
    pooled[rng.random(len(pooled)) < cfg.image_dropout] = 0.0
    if detected is not None:
        x = {**x, "detected": detected[0][idx]}
    if not texts:
        return {**x, "tags": tags}, seq
    t_seq = np.array([vocab.encode(c, cfg.max_length) for c in texts], np.int32)
    if cfg.text_images == "matched":
        images = matched_images(texts, fs.captions, rng)
        t_pooled, t_tags = fs.features[images], tagger.text_tags(texts, image_tags, rng, floor=images)
    else:
        t_pooled = np.zeros((len(texts), pooled.shape[1]), np.float32)
        t_tags = tagger.text_tags(texts, image_tags, rng)
    out = {"pooled": np.concatenate([pooled, t_pooled]), "tokens": np.concatenate([x["tokens"], t_seq[:, :-1]]),
           "tags": np.concatenate([tags, t_tags])}
    if detected is not None:
        out["detected"] = np.concatenate([x["detected"], text_detected(texts, detected[1], rng)])
    return out, np.concatenate([seq, t_seq])


def train_cached(cfg: TrainConfig) -> Velm:
    if (cfg.text_captions or cfg.image_dropout or cfg.text_images != "none") and not cfg.tags:
        raise OptionError("--text-captions, --image-dropout and --text-images train a decoder conditioned on tags: "
                          "add --tags")
    if not 0 <= cfg.image_dropout < 1 or cfg.text_weight < 0:
        raise OptionError(f"--image-dropout must be in [0, 1) and --text-weight at least 0, got {cfg.image_dropout} "
                          f"and {cfg.text_weight}")
    if cfg.detector and not cfg.tags:
        raise OptionError("--detector conditions a decoder trained on tags on detections too: add --tags")
    if cfg.scst_epochs < 0 or cfg.scst_samples < 2 or cfg.scst_learning_rate <= 0 or not 0 <= cfg.scst_withheld < 1:
        raise OptionError(f"--scst-epochs must be at least 0, --scst-samples at least 2 (their mean is each one's "
                          f"baseline), --scst-learning-rate above 0 and --scst-withheld in [0, 1), got "
                          f"{cfg.scst_epochs}, {cfg.scst_samples}, {cfg.scst_learning_rate} and {cfg.scst_withheld}")
    if cfg.tags and cfg.backbone != "efficientnet_lite0":
        raise OptionError("--tags needs --backbone efficientnet_lite0 (its ImageNet classifier names the tags)")
    texts = text_captions(cfg.text_captions) if cfg.text_captions else []
    run = start_run(cfg, feature_sets, texts)
    train_set, dev_set, vocab, mcfg = run.train, run.val, run.vocab, run.model_config
    tagger = Tagger.for_vocab(vocab, cfg.backbone_weights) if cfg.tags else None
    if tagger is not None:
        mcfg = dataclasses.replace(mcfg, tag_words=tagger.words)
    detected = {}
    if cfg.detector:
        from velm_convert.feature_cache import detected_tags

        for name, fs in (("train", train_set), ("dev", dev_set)):
            detected[name] = detected_tags(fs.files, cfg.detector, cfg.feature_cache or DEFAULT_DIR, cfg.progress)
        mcfg = dataclasses.replace(mcfg, detection_labels=detected["train"][1])
    pairs, dev_inputs = {}, dev_set.features
    for name, fs in (("train", train_set), ("dev", dev_set)):
        idx, seq = encode_captions(fs, vocab, cfg.max_length)
        x = {"pooled": fs.features[idx], "tokens": seq[:, :-1]}
        if tagger is not None and name == "dev":
            dev_inputs = {"pooled": fs.features, "tags": tagger.tags(fs.features)}
            if detected:
                dev_inputs["detected"] = detected["dev"][0]
            x.update({k: v[idx] for k, v in dev_inputs.items() if k != "pooled"})
        elif tagger is not None:
            x, seq = with_tags(x, seq, idx, fs, tagger.tags(fs.features), texts, tagger, vocab, cfg,
                               detected.get("train"))
        weight = (seq[:, 1:] != 0).astype(np.float32)
        if name == "train" and texts:
            weight[len(seq) - len(texts):] *= cfg.text_weight
        pairs[name] = (x, seq[:, 1:], weight)
    head = build_on_features(mcfg, train_set.features.shape[1])
    compile_for_captions(head, cfg, smoothed_loss(cfg.label_smoothing))
    steps = -(-len(pairs["train"][1]) // cfg.batch_size)
    budget = CosineOnBudget(cfg.learning_rate, cfg.epochs * steps, cfg.max_minutes)
    dev_score = DevScore(dev_set, dev_inputs, vocab, mcfg, cfg.patience)
    callbacks = [budget, dev_score, keras.callbacks.CSVLogger(str(run.out / "history.csv"))]
    log.info("head on %s features: %d training pairs (%d of them text only), vocabulary %d, %d tag words, "
             "%d detector labels", cfg.backbone, len(pairs["train"][1]), len(texts), len(vocab), len(mcfg.tag_words),
             len(mcfg.detection_labels))
    t1 = time.monotonic()
    x, y, w = pairs["train"]
    history = head.fit(x, y, sample_weight=w, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True,
                       validation_data=pairs["dev"], callbacks=callbacks, verbose=1 if cfg.progress else 2)
    if cfg.scst_epochs:
        self_critical(head, cfg, vocab, mcfg, train_set, (x, y, w), dev_score, len(history.history.get("loss", [])),
                      tagger, detected.get("train"))
    train_seconds = time.monotonic() - t1
    if dev_score.best_weights is not None:
        head.set_weights(dev_score.best_weights)
    model = build(mcfg)  # the real backbone under the trained head: takes images like every VELM
    transfer_head(head, model)
    if tagger is not None:
        set_tagger(model, tagger.classifier, tagger.matrix)
    from velm_convert import efficientnet_lite

    return finish_run(Velm(model, vocab, mcfg), run, cfg, history, budget, train_seconds, len(pairs["train"][1]),
                      count_macs(model, mcfg), dev_score.scores, text_captions=len(texts),
                      best_epoch=dev_score.best_epoch + 1, selected_by="dev BLEU-4 (greedy)",
                      self_critical_epochs=cfg.scst_epochs,
                      backbone_weights=efficientnet_lite.ATTRIBUTION)


def self_critical(head: keras.Model, cfg: TrainConfig, vocab: Vocab, mcfg, train_set: FeatureSet, pairs: tuple,
                  dev_score: DevScore, done: int, tagger: Tagger | None, detected) -> None:
    """``cfg.scst_epochs`` of ``velm_convert.scst`` from the best cross-entropy epoch, each scored on the dev split
    like those (``done``: how many ran); the training sequences without an image (the rows of ``pairs``, the
    cross-entropy's (inputs, targets, weights), whose pooled features are all zero) keep their cross-entropy, and
    ``cfg.scst_withheld`` of the photos are sampled from their tags alone."""
    from velm_convert import scst

    if dev_score.best_weights is not None:
        head.set_weights(dev_score.best_weights)
    images = {"pooled": train_set.features}
    if tagger is not None:
        images["tags"] = tagger.tags(train_set.features)
    if detected is not None:
        images["detected"] = detected[0]
    x, y, w = pairs
    blank = ~np.asarray(x["pooled"]).any(axis=1)
    without_image = ({k: np.asarray(v)[blank] for k, v in x.items()}, y[blank], w[blank]) if blank.any() else None

    def scored(e: int, facts: dict) -> None:
        dev_score.consider(done + e, f"self-critical epoch {e + 1}, epoch")

    scst.finetune(head, images, train_set.captions, vocab, mcfg.steps, without_image,
                  smoothed_loss(cfg.label_smoothing), cfg.scst_epochs, cfg.scst_learning_rate, cfg.scst_samples,
                  cfg.batch_size, cfg.seed, cfg.scst_withheld, scored, cfg.progress)
