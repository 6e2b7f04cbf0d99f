"""Configuration dataclasses of the model and of training (no TensorFlow import here).

The comment after each field is its documentation and the ``--help`` text of the CLI flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from velm_edge import scenes

BACKBONES = ("seed", "mobilenet_v3_small", "efficientnet_lite0")
PRETRAINED = ("efficientnet_lite0",)  # backbones with shipped ImageNet weights: frozen, features cached


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

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.vocab_size < 5 or self.max_length < 3 or self.image_size < 32:
            raise ValueError(f"vocab_size >= 5, max_length >= 3 and image_size >= 32 needed, got "
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
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainConfig:
    out: str = "runs/default"  # output directory (created); see the module docstring
    dataset: str = "synth"  # synth | coco | flickr | csv | jsonl | flickr8k (a folder: captions.csv, images/, splits/)
    annotations: str | None = None  # caption file for coco/flickr/csv/jsonl; the directory for flickr8k
    images: str | None = None  # image folder (default: the caption file's folder; flickr8k: DIR/images)
    splits: str | None = None  # folder of split files train.txt / dev.txt (flickr8k: DIR/splits); else a random split
    feature_cache: str | None = None  # folder for frozen-backbone features (default ~/.cache/velm-convert/features)
    max_images: int | None = None  # use at most this many images of a caption file
    val_fraction: float = 0.05  # share of a caption file's images held out for validation
    train_scenes: int = 60_000  # synthetic training scenes (seeds 0..N-1)
    val_scenes: int = 1_000  # synthetic validation scenes (a disjoint seed range)
    image_size: int = ModelConfig.image_size  # model input side in pixels
    resize_mode: str = "stretch"  # how dataset images are fitted: stretch | crop | letterbox
    backbone: str = ModelConfig.backbone  # seed | mobilenet_v3_small | efficientnet_lite0 (frozen, features cached)
    backbone_weights: str | None = None  # optional local weights file for the backbone
    feature_dim: int = ModelConfig.feature_dim  # image feature size F
    embed_dim: int = ModelConfig.embed_dim  # word embedding size E
    units: int = ModelConfig.units  # GRU state size S
    dropout: float = ModelConfig.dropout  # dropout on feature, embeddings, GRU output (0.5 on small real data)
    batch_norm: bool = ModelConfig.batch_norm  # batch normalization in the seed CNN (slower per step on CPU)
    max_length: int = ModelConfig.max_length  # caption tokens incl. <start>/<end>; longer captions are cut
    label_smoothing: float = 0.0  # share of each target's probability spread over the vocabulary (0 = off)
    min_count: int = 1  # drop words seen fewer times than this (they become <unk>)
    max_vocab: int = 10_000  # vocabulary cap, specials included
    batch_size: int = 32  # sequences per step (split across GPUs when several are visible)
    epochs: int = 10  # epochs (the learning rate follows a cosine over all of them, or over max_minutes)
    learning_rate: float = 2e-3  # Adam learning rate at the start (cosine decay to 5 percent of it)
    patience: int = 3  # early stopping: epochs without a better validation loss
    max_minutes: float | None = None  # stop after this much training time; the cosine then ends on time
    seed: int = 0  # weights, shuffling and data split
    workers: int | None = None  # processes that render synthetic scenes (default: all cores)
    progress: bool = True  # progress bars
    scene_config: scenes.SceneConfig = dataclasses.field(default_factory=scenes.SceneConfig)

    def synthetic_scenes(self) -> scenes.SceneConfig:
        """The synthetic scene settings, rendered natively at the model's input size."""
        return dataclasses.replace(self.scene_config, size=self.image_size)

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model settings: every ModelConfig field that TrainConfig also has, taken from here."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig) if hasattr(self, f.name)}
        return ModelConfig(vocab_size=vocab_size, **shared)
