"""Configuration dataclasses of the model and of training (no TensorFlow import here).

Each field's ``metadata["help"]`` is its documentation and the ``--help`` text of its CLI flag
(``velm_edge.tools.flags.add_fields``); a field without it is refused when the parser is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from velm_edge.errors import OptionError
from velm_edge.runtime.choices import RESIZE_MODES
from velm_edge.synth import scenes

BACKBONES = ("seed", "mobilenet_v3_small", "efficientnet_lite0")
FORMATS = ("synth", "coco", "flickr", "csv", "jsonl", "flickr8k")  # what --dataset reads (see datasets)
PRETRAINED = ("efficientnet_lite0",)  # backbones with shipped ImageNet weights: frozen, features cached


def flag(default, help: str, **more):
    """A TrainConfig field that is also a ``velm-convert train`` flag: ``help`` is its --help text."""
    return field(default=default, metadata={"help": help, **more})


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # number of tokens, specials included
    max_length: int = 16  # tokens per caption including <start> and <end>
    image_size: int = 80  # square input side in pixels
    backbone: str = "seed"  # "seed" (small conv/pool CNN), "mobilenet_v3_small" or "efficientnet_lite0" (ImageNet)
    backbone_weights: str | None = None  # local .weights.h5/.h5 file for the backbone, or None
    seed_filters: tuple[int, ...] = (16, 32, 64, 64)  # conv widths of the seed CNN, one per block
    batch_norm: bool = False  # batch normalization after each seed conv (folded on export; slower on CPU)
    feature_dim: int = 256  # F: image feature size
    embed_dim: int = 64  # E: word embedding size
    units: int = 256  # S: GRU state size
    dropout: float = 0.1  # dropout on the feature, the embeddings and the GRU output while training
    pooled_dropout: float = 0.0  # dropout on the backbone's pooled output while training (a decoder with tags)
    # Caption words the decoder is conditioned on ("tags"): the ImageNet classifier's probability of each, summed
    # over the classes that name it (velm_convert.imagenet_words), enters the feature beside the image.  Empty: none.
    tag_words: tuple[str, ...] = ()
    # The labels of the detector the decoder is conditioned on as well ("detected": per label its best score, then
    # per label whether two or more are seen; velm_edge.runtime.detect.as_tags).  Empty: none.
    detection_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise OptionError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.vocab_size < 5 or self.max_length < 3 or self.image_size < 32:
            raise OptionError(f"vocab_size >= 5, max_length >= 3 and image_size >= 32 needed, got "
                             f"{self.vocab_size}, {self.max_length}, {self.image_size}")
        if self.backbone_weights and not Path(self.backbone_weights).is_file():
            raise FileNotFoundError(f"backbone weights file not found: {self.backbone_weights}")

    @property
    def steps(self) -> int:
        """Decoder steps per caption (teacher-forced sequence length)."""
        return self.max_length - 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["seed_filters"] = tuple(d.get("seed_filters", cls.seed_filters))
        d["tag_words"] = tuple(d.get("tag_words", ()))
        d["detection_labels"] = tuple(d.get("detection_labels", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainConfig:
    out: str = flag("runs/default", "output directory (created): model.keras, history.csv, curve.png, train.json")
    dataset: str = flag("synth",
        "synth | coco | flickr | csv | jsonl | flickr8k (a folder: captions.csv, images/, splits/)", choices=FORMATS)
    annotations: str | None = flag(None,
        "caption file for coco/flickr/csv/jsonl; the directory for flickr8k")
    images: str | None = flag(None,
        "image folder (default: the caption file's folder; flickr8k: DIR/images)")
    splits: str | None = flag(None,
        "folder of split files train.txt / dev.txt (flickr8k: DIR/splits); else a random split")
    feature_cache: str | None = flag(None,
        "folder for frozen-backbone features (default ~/.cache/velm-convert/features)")
    max_images: int | None = flag(None, "use at most this many images of a caption file")
    val_fraction: float = flag(0.05,
        "share of a caption file's images held out for validation")
    train_scenes: int = flag(60_000, "synthetic training scenes (seeds 0..N-1)")
    val_scenes: int = flag(1_000, "synthetic validation scenes (a disjoint seed range)")
    image_size: int = flag(ModelConfig.image_size, "model input side in pixels")
    resize_mode: str = flag("stretch",
        "how dataset images are fitted: stretch | crop | letterbox", choices=RESIZE_MODES)
    backbone: str = flag(ModelConfig.backbone,
        "seed | mobilenet_v3_small | efficientnet_lite0 (frozen, features cached)", choices=BACKBONES)
    backbone_weights: str | None = flag(None,
        "optional local weights file for the backbone")
    feature_dim: int = flag(ModelConfig.feature_dim, "image feature size F")
    embed_dim: int = flag(ModelConfig.embed_dim, "word embedding size E")
    units: int = flag(ModelConfig.units, "GRU state size S")
    dropout: float = flag(ModelConfig.dropout,
        "dropout on feature, embeddings, GRU output (0.5 on small real data)")
    pooled_dropout: float = flag(ModelConfig.pooled_dropout,
        "dropout on the frozen backbone's pooled output while training a decoder with tags, so that it leans on "
        "the tags and detections too (0 = off)")
    batch_norm: bool = flag(ModelConfig.batch_norm,
        "batch normalization in the seed CNN (slower per step on CPU)")
    max_length: int = flag(ModelConfig.max_length,
        "caption tokens incl. <start>/<end>; longer captions are cut")
    label_smoothing: float = flag(0.0,
        "share of each target's probability spread over the vocabulary (0 = off)")
    min_count: int = flag(1, "drop words seen fewer times than this (they become <unk>)")
    tags: bool = flag(False,
        "condition the decoder on the caption words of the ImageNet classes it sees (efficientnet_lite0 only)")
    text_captions: str | None = flag(None,
        "CSV of captions without images (a 'caption' column, e.g. COCO's): trains the language side and the "
        "vocabulary, each caption conditioned on its own tag words (needs --tags)")
    text_weight: float = flag(1.0,
        "loss weight of each --text-captions caption beside an image caption's 1 (lower keeps the images' style)")
    text_images: str = flag("none",
        "the image a --text-captions caption trains with: none (zeros), or matched: a random training photo that "
        "agrees on whether people are in it, so objects come from the tags and people from the image",
        choices=("none", "matched"))
    detector: str | None = flag(None,
        "a bundle with a detector graph (the shipped photo bundle, or velm-convert detector's output): the decoder "
        "is conditioned on its detections too, computed once per photo (needs --tags)")
    image_dropout: float = flag(0.0,
        "share of the image captions trained with the image withheld, so the decoder learns to use the tags")
    scst_epochs: int = flag(0,
        "self-critical epochs after the cross-entropy ones (backbone with cached features only): the decoder samples "
        "captions of each training photo and learns from their CIDEr-D against the photo's references; the epoch "
        "kept is still the one with the best dev BLEU-4 (0 = off)")
    scst_learning_rate: float = flag(5e-5, "Adam learning rate of the self-critical epochs")
    scst_samples: int = flag(5, "captions sampled per photo in a self-critical step (the baseline is their mean)")
    scst_withheld: float = flag(0.25,
        "share of the photos sampled with the image withheld in a self-critical step, from their tags and "
        "detections alone (where the second decoding starts), so that start learns from the references too")
    max_vocab: int = flag(10_000, "vocabulary cap, specials included")
    batch_size: int = flag(32,
        "sequences per step (split across GPUs when several are visible)")
    epochs: int = flag(10,
        "epochs (the learning rate follows a cosine over all of them, or over max_minutes)")
    learning_rate: float = flag(2e-3,
        "Adam learning rate at the start (cosine decay to 5 percent of it)")
    patience: int = flag(3, "early stopping: epochs without a better validation loss")
    max_minutes: float | None = flag(None,
        "stop after this much training time; the cosine then ends on time")
    seed: int = flag(0, "weights, shuffling and data split")
    workers: int | None = flag(None,
        "processes that render synthetic scenes (default: all cores)")
    progress: bool = flag(True, "progress bars")
    scene_config: scenes.SceneConfig = field(default_factory=scenes.SceneConfig)  # not a flag: set in code

    def synthetic_scenes(self) -> scenes.SceneConfig:
        """The synthetic scene settings, rendered natively at the model's input size."""
        return dataclasses.replace(self.scene_config, size=self.image_size)

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model settings: every ModelConfig field that TrainConfig also has, taken from here."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig) if hasattr(self, f.name)}
        return ModelConfig(vocab_size=vocab_size, **shared)
