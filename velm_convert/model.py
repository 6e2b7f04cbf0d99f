"""The Keras VELM: a CNN image encoder feeding a GRU language decoder.

Training graph (teacher forcing over whole sequences)::

    image (H,W,3) -> backbone -> Dense "feature" (F) -> Dense tanh "init_state" (S)   [init-inject]
    tokens (T,)   -> Embedding "embedding" (E) ++ feature at every step                 [par-inject]
                  -> GRU "gru" (S, initial state = init_state) -> Dense "logits" (V)

With ``ModelConfig.tag_words`` (a decoder trained on tags) the feature is relu(W pooled + b + T tags), the tags
being the ImageNet classifier's probability of each tag word, computed by frozen layers from the same pooled
output; its vision graph also gives the start from the tags alone (tag_feature, tag_state).  With
``ModelConfig.detection_labels`` too, a second input "detected" (the detector's objects as tags:
``velm_edge.runtime.detect.as_tags``) adds D detected inside the same relu.

Inference/export graphs built from the same weights (see ``vision_model`` and ``step_model``):
vision: image -> feature, state0;  step: embedding, feature, state -> logits, state.
The step graph is plain FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD / SUB arithmetic: no loop,
no GATHER (the embedding lookup happens on the host), which is what int8 TFLite and the Edge TPU need.

A ``Velm`` is saved as one ``.keras`` file; the vocabulary and configuration travel inside the
same zip under ``velm/`` so ``Velm.load(path)`` needs nothing else.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np

from velm_convert.config import ModelConfig
from velm_edge.errors import OptionError
from velm_edge.runtime import decode
from velm_edge.runtime.tokenizer import Vocab


def _seed_backbone(x, filters: tuple[int, ...], batch_norm: bool):
    for i, f in enumerate(filters):
        if batch_norm:  # folded into the convolution when converted to TFLite
            x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{i + 1}")(x)
            x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        else:
            x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    return keras.layers.Flatten(name="flatten")(x)


def _mobilenet_backbone(x, cfg: ModelConfig):
    net = keras.applications.MobileNetV3Small(
        input_shape=(cfg.image_size, cfg.image_size, 3), include_top=False, weights=None,
        minimalistic=True, include_preprocessing=False, pooling="avg")
    if cfg.backbone_weights:
        net.load_weights(cfg.backbone_weights)
    net.name = "mobilenet_v3_small"
    return net(keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x))  # MobileNet expects [-1, 1]


HEAD_LAYERS = ("feature", "init_state", "embedding", "gru", "logits")  # the trained part on a frozen backbone


def _backbone(image, cfg: ModelConfig):
    if cfg.backbone == "seed":
        return _seed_backbone(image, cfg.seed_filters, cfg.batch_norm)
    if cfg.backbone == "efficientnet_lite0":
        from velm_convert import efficientnet_lite

        net = efficientnet_lite.backbone(cfg.image_size, weights=cfg.backbone_weights)
        net.trainable = False  # frozen: ImageNet features (and BatchNorm statistics) as shipped
        return net(image)
    return _mobilenet_backbone(image, cfg)


def _tagger(cfg: ModelConfig, pooled):
    """Pooled backbone output -> ImageNet class probabilities -> the probability of each tag word (frozen layers,
    given their weights by ``set_tagger``)."""
    classes = keras.layers.Dense(1000, activation="softmax", name="imagenet_classes", trainable=False)(pooled)
    return keras.layers.Dense(len(cfg.tag_words), use_bias=False, name="class_words", trainable=False)(classes)


def set_tagger(model: keras.Model, classifier: tuple[np.ndarray, np.ndarray], class_words: np.ndarray) -> None:
    """Load the frozen tagger: the ImageNet head (kernel (D, 1000), bias) and the (1000, K) class -> word matrix."""
    model.get_layer("imagenet_classes").set_weights(list(classifier))
    model.get_layer("class_words").set_weights([class_words])


def _head(cfg: ModelConfig, pooled, tokens, tags=None, detected=None):
    """Backbone output (and tag scores, and detections as tags) -> feature, initial state and the teacher-forced
    GRU's logits."""
    if tags is None:
        feature = keras.layers.Dense(cfg.feature_dim, activation="relu", name="feature")(pooled)
    else:  # relu(W pooled + b + T tags [+ D detected]): an image without the objects its tags name is still
        # described by them
        if cfg.pooled_dropout:  # training only: the image part is not always whole, so the tags are heard
            pooled = keras.layers.Dropout(cfg.pooled_dropout, name="pooled_dropout")(pooled)
        parts = [keras.layers.Dense(cfg.feature_dim, name="feature")(pooled),
                 keras.layers.Dense(cfg.feature_dim, use_bias=False, name="feature_tags")(tags)]
        if detected is not None:
            parts.append(keras.layers.Dense(cfg.feature_dim, use_bias=False, name="feature_detected")(detected))
        mixed = keras.layers.Add(name="feature_mix")(parts)
        feature = keras.layers.ReLU(name="grounded_feature")(mixed)
    state0 = keras.layers.Dense(cfg.units, activation="tanh", name="init_state")(feature)
    emb = keras.layers.Embedding(cfg.vocab_size, cfg.embed_dim, name="embedding")(tokens)
    emb = keras.layers.Dropout(cfg.dropout, name="embedding_dropout")(emb)
    feat = keras.layers.Dropout(cfg.dropout, name="feature_dropout")(feature)
    feat_seq = keras.layers.RepeatVector(cfg.steps, name="feature_per_step")(feat)
    seq = keras.layers.Concatenate(name="par_inject")([emb, feat_seq])
    h = keras.layers.GRU(cfg.units, return_sequences=True, name="gru")(seq, initial_state=state0)
    h = keras.layers.Dropout(cfg.dropout, name="gru_output_dropout")(h)  # training only; the step graph has none
    return keras.layers.Dense(cfg.vocab_size, name="logits")(h)


def build(cfg: ModelConfig) -> keras.Model:
    """The training model: {"image": (H,W,3) float [0,1], "tokens": (T,) int} -> logits (T, V).  With
    ``cfg.tag_words`` the tags are computed from the backbone inside (load the tagger with ``set_tagger``)."""
    image = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    tokens = keras.Input((cfg.steps,), dtype="int32", name="tokens")
    inputs = {"image": image, "tokens": tokens}
    if cfg.detection_labels:
        inputs["detected"] = keras.Input((2 * len(cfg.detection_labels),), name="detected")
    pooled = _backbone(image, cfg)
    tags = _tagger(cfg, pooled) if cfg.tag_words else None
    return keras.Model(inputs, _head(cfg, pooled, tokens, tags, inputs.get("detected")), name="velm")


def build_on_features(cfg: ModelConfig, pooled_dim: int) -> keras.Model:
    """The same head on cached backbone outputs: {"pooled": (D,), "tokens": (T,)} -> logits (T, V), and a
    "tags" (K,) input with ``cfg.tag_words`` (given, so captions without images can be trained with the tags of
    their own words).  Its layers have the full model's names, so ``transfer_head`` moves the trained weights."""
    pooled = keras.Input((pooled_dim,), name="pooled")
    tokens = keras.Input((cfg.steps,), dtype="int32", name="tokens")
    inputs = {"pooled": pooled, "tokens": tokens}
    if cfg.tag_words:
        inputs["tags"] = keras.Input((len(cfg.tag_words),), name="tags")
    if cfg.detection_labels:
        inputs["detected"] = keras.Input((2 * len(cfg.detection_labels),), name="detected")
    return keras.Model(inputs, _head(cfg, pooled, tokens, inputs.get("tags"), inputs.get("detected")),
                       name="velm_head")


def transfer_head(source: keras.Model, target: keras.Model) -> None:
    for name in HEAD_LAYERS + tuple(n for n in ("feature_tags", "feature_detected") if _has(source, n)):
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())


def _has(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def vision_model(model: keras.Model, classifier: tuple[np.ndarray, np.ndarray] | None = None) -> keras.Model:
    """image -> {"feature": (F,), "state": (S,)}, sharing the training model's layers (for a head built on
    cached features: {"pooled", and "tags" when it has them} -> feature, state).  A model with a tagger also
    outputs "classes", its ImageNet softmax (C,); ``classifier``: (kernel (D, C), bias (C,)) of a classifier over
    the pooled backbone output (EfficientNet-Lite0's ImageNet head) adds it to a model without one."""
    if "image" in model.input:
        inputs = model.input["image"] if "detected" not in model.input else \
            {k: model.input[k] for k in ("image", "detected")}
    else:
        inputs = {k: v for k, v in model.input.items() if k != "tokens"}
        inputs = inputs if len(inputs) > 1 else inputs["pooled"]
    tagged = _has(model, "grounded_feature")
    outputs = {"feature": model.get_layer("grounded_feature" if tagged else "feature").output,
               "state": model.get_layer("init_state").output}
    if tagged:  # the start the decoder learnt from captions without an image: the tags alone
        outputs["tag_feature"], outputs["tag_state"] = _tags_alone(model)
    if _has(model, "imagenet_classes"):
        outputs["classes"] = model.get_layer("imagenet_classes").output
    elif classifier is not None:
        kernel, bias = classifier
        head = keras.layers.Dense(kernel.shape[1], activation="softmax", name="imagenet_classes")
        outputs["classes"] = head(model.get_layer("feature").input)  # the pooled backbone output
        head.set_weights([kernel, bias])
    return keras.Model(inputs, outputs, name="velm_vision")


def _tags_alone(model: keras.Model):
    """(feature, initial state) of a tagged model with the image part withheld: relu(b + T tags [+ D detected]), as
    in training with ``image_dropout`` or a text caption.  The bias is added by an identity FULLY_CONNECTED layer
    (an op the Edge TPU runs), and the initial state comes from the model's own "init_state" layer."""
    image_part = model.get_layer("feature")
    add_bias = keras.layers.Dense(image_part.units, name="tags_alone_bias")
    tagged = model.get_layer("feature_tags").output
    if _has(model, "feature_detected"):
        tagged = keras.layers.Add(name="tags_alone_mix")([tagged, model.get_layer("feature_detected").output])
    biased = add_bias(tagged)
    add_bias.set_weights([np.eye(image_part.units, dtype=np.float32), np.asarray(image_part.bias)])
    feature = keras.layers.ReLU(name="tags_alone_feature")(biased)
    return feature, model.get_layer("init_state")(feature)


def step_model(model: keras.Model) -> keras.Model:
    """One decoder step with explicit state, built from the trained GRU's weights.

    {"embedding": (E,), "feature": (F,), "state": (S,)} -> {"logits": (V,), "state": (S,)}.
    Keras' GRU (reset_after=True): z, r = sigmoid(x Wz,r + b + h Uz,r + b'), n = tanh(x Wn + b +
    r * (h Un + b')), h' = z * h + (1 - z) * n, written here as n + z * (h - n).
    """
    gru = model.get_layer("gru")
    cell = gru.cell
    if not cell.reset_after or cell.activation.__name__ != "tanh" or cell.recurrent_activation.__name__ != "sigmoid":
        raise ValueError("step_model supports GRU(reset_after=True, activation=tanh, recurrent_activation=sigmoid)")
    kernel, rec_kernel, bias = (np.asarray(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
    units = cell.units
    emb_dim = model.get_layer("embedding").output_dim
    feat_dim = model.get_layer("feature").units
    e_in = keras.Input((emb_dim,), name="embedding")
    f_in = keras.Input((feat_dim,), name="feature")
    h_in = keras.Input((units,), name="state")
    x = keras.layers.Concatenate(name="step_par_inject")([e_in, f_in])

    def gate(name: str, k: int):
        sl = slice(k * units, (k + 1) * units)
        dx = keras.layers.Dense(units, name=f"step_x{name}")
        dh = keras.layers.Dense(units, name=f"step_h{name}")
        xo, ho = dx(x), dh(h_in)
        dx.set_weights([kernel[:, sl], bias[0, sl]])
        dh.set_weights([rec_kernel[:, sl], bias[1, sl]])
        return xo, ho

    xz, hz = gate("z", 0)
    xr, hr = gate("r", 1)
    xn, hn = gate("n", 2)
    z = keras.layers.Activation("sigmoid", name="step_z")(keras.layers.Add(name="step_z_sum")([xz, hz]))
    r = keras.layers.Activation("sigmoid", name="step_r")(keras.layers.Add(name="step_r_sum")([xr, hr]))
    rn = keras.layers.Multiply(name="step_reset")([r, hn])
    n = keras.layers.Activation("tanh", name="step_n")(keras.layers.Add(name="step_n_sum")([xn, rn]))
    diff = keras.layers.Subtract(name="step_keep")([h_in, n])
    h_new = keras.layers.Add(name="step_state")([n, keras.layers.Multiply(name="step_update")([z, diff])])
    logits = model.get_layer("logits")(h_new)
    return keras.Model({"embedding": e_in, "feature": f_in, "state": h_in},
                       {"logits": logits, "state": h_new}, name="velm_step")


def count_macs(model: keras.Model, cfg: ModelConfig) -> dict[str, int]:
    """Multiply-accumulates per caption: the vision graph once, the decoder step cfg.steps times."""
    vision = 0
    for layer in _flat_layers(vision_model(model)):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, oh, ow, c = layer.output.shape
            vision += oh * ow * kh * kw * c
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, oh, ow, co = layer.output.shape
            vision += oh * ow * kh * kw * layer.input.shape[-1] * co
        elif isinstance(layer, keras.layers.Dense):
            vision += int(np.prod(layer.kernel.shape))
    step = sum(int(np.prod(layer.kernel.shape)) for layer in step_model(model).layers
               if isinstance(layer, keras.layers.Dense))
    return {"vision": int(vision), "decoder_step": step, "caption": int(vision + cfg.steps * step)}


def _flat_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


# ----------------------------------------------------------------------------- wrapper


def _count(inputs) -> int:
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)


def _rows(inputs, start: int, stop: int):
    """Rows start..stop of an array, or of each array of a dict of inputs."""
    if isinstance(inputs, dict):
        return {k: v[start:stop] for k, v in inputs.items()}
    return inputs[start:stop]


class Velm:
    """A trained model with its vocabulary: captioning (float reference) and .keras I/O."""

    def __init__(self, model: keras.Model, vocab: Vocab, config: ModelConfig, info: dict | None = None):
        if len(vocab) != config.vocab_size:
            raise OptionError(f"vocabulary has {len(vocab)} tokens but the model expects {config.vocab_size}")
        self.model, self.vocab, self.config = model, vocab, config
        self.info = dict(info or {})  # training facts: data, metrics, timings
        self._vision = self._step = None

    @property
    def resize_mode(self) -> str:
        """How training resized its images (stretch, crop, letterbox): what evaluation and the bundle must do too."""
        return self.info.get("train_config", {}).get("resize_mode", "stretch")

    # -- persistence
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".keras":
            raise OptionError(f"model files end in .keras, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        model = self.model
        if getattr(model, "optimizer", None) is not None:  # ship the weights, not Adam's moments (3x the size)
            model = keras.Model.from_config(model.get_config())
            model.set_weights(self.model.get_weights())
        model.save(path)
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("velm/vocab.txt", self.vocab.to_text())
            z.writestr("velm/config.json", json.dumps(self.config.to_json(), indent=2))
            z.writestr("velm/info.json", json.dumps(self.info, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Velm:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        try:
            with zipfile.ZipFile(path) as z:
                vocab = Vocab.from_text(z.read("velm/vocab.txt").decode("utf-8"), f"{path}:velm/vocab.txt")
                config = ModelConfig.from_json(json.loads(z.read("velm/config.json")))
                info = json.loads(z.read("velm/info.json")) if "velm/info.json" in z.namelist() else {}
        except (zipfile.BadZipFile, KeyError) as e:
            raise OptionError(f"{path} is not a VELM .keras file (saved by Velm.save): {e}") from None
        return cls(keras.models.load_model(path, compile=False), vocab, config, info)

    # -- inference (float reference)
    @property
    def vision(self) -> keras.Model:
        if self._vision is None:
            self._vision = vision_model(self.model)
        return self._vision

    @property
    def step(self) -> keras.Model:
        if self._step is None:
            self._step = step_model(self.model)
        return self._step

    @property
    def embedding_table(self) -> np.ndarray:
        """The (V, E) word embeddings as float32: what the host looks up before each decoder step."""
        return np.asarray(self.model.get_layer("embedding").embeddings, np.float32)

    def encode_images(self, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Float images (N,H,W,3) in [0,1] (or a head's pooled features (N,D), or {"pooled", "tags"} arrays for a
        head with tags) -> (features (N,F), initial states (N,S)).  Images go through the backbone 32 at a time:
        an EfficientNet-Lite0 batch of 256 at 224x224 holds gigabytes of activations."""
        if (images.get("image", images.get("pooled")) if isinstance(images, dict) else images).ndim == 4:
            batch_size = min(batch_size, 32)
        feats, states = [], []
        for i in range(0, _count(images), batch_size):
            out = self.vision(_rows(images, i, i + batch_size), training=False)
            feats.append(np.asarray(out["feature"]))
            states.append(np.asarray(out["state"]))
        return np.concatenate(feats), np.concatenate(states)

    def step_fn(self, features: np.ndarray) -> decode.Step:
        """A decode.Step over the float step model; a single feature row is broadcast to the batch."""
        table = self.embedding_table

        def step(tokens: np.ndarray, states: np.ndarray):
            f = features if len(features) == len(tokens) else np.repeat(features[:1], len(tokens), 0)
            out = self.step({"embedding": table[tokens], "feature": f, "state": states}, training=False)
            return np.asarray(out["logits"]), np.asarray(out["state"])

        return step

    def caption_arrays(self, images: np.ndarray, options: decode.DecodeOptions = decode.DecodeOptions(),
                       batch_size: int = 256) -> list[decode.Decoded]:
        """Decode float images (N,H,W,3) in [0,1] (or a head's pooled features) with ``options``: greedy (batched)
        or beam search (per image), with its length penalty, n-gram ban and length limits.  The float model has
        no classifier and no clock: ``ground`` and ``time_budget_ms`` are the device's."""
        results: list[decode.Decoded] = []
        v, steps = self.vocab, options.steps(self.config.steps)
        limits = dict(min_length=options.min_length, no_repeat_ngram=options.no_repeat_ngram)
        for i in range(0, _count(images), batch_size):
            feats, states = self.encode_images(_rows(images, i, i + batch_size), batch_size)
            if options.beam_size == 1:
                results += decode.greedy(self.step_fn(feats), states, v.start_id, v.end_id, steps, **limits)
            else:
                for f, s in zip(feats, states):
                    results.append(decode.beam_search(self.step_fn(f[None]), s[None], v.start_id, v.end_id, steps,
                                                      options.beam_size, options.length_penalty, **limits))
        return results

    def caption(self, images: np.ndarray, options: decode.DecodeOptions = decode.DecodeOptions()) -> list[str]:
        return [self.vocab.decode(d.tokens) for d in self.caption_arrays(images, options)]
