"""An independent numpy forward pass of EfficientNet-Lite0, straight from the PyTorch state dict.

It shares nothing with the Keras port (``velm_convert.efficientnet_lite``) but the weights file: weights stay
in PyTorch's layout, padding is written out by hand (TensorFlow "same": the extra row and column after),
and BatchNorm is applied from its running statistics.  The port is proven by comparing the two
(``tests/test_efficientnet.py`` and ``benchmarks/backbone_port.py``).  Slow (about a second per image)
and only for checking.
"""

from __future__ import annotations

import numpy as np

from velm_convert.efficientnet_lite import BN_EPSILON, MEAN, STD, STRIDE2_BLOCKS


def pad_same(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """x (C, H, W) padded as TensorFlow's "same": total = max((out - 1) * s + k - in, 0), the odd one after."""
    pads = []
    for n in x.shape[1:]:
        out = -(-n // stride)
        total = max((out - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *pads])


def _bn(x: np.ndarray, sd: dict, name: str) -> np.ndarray:
    scale = sd[name + ".weight"] / np.sqrt(sd[name + ".running_var"] + BN_EPSILON)
    shift = sd[name + ".bias"] - sd[name + ".running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def _conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Dense convolution, x (C, H, W), w (O, C, k, k) in PyTorch's layout."""
    o, c, k, _ = w.shape
    xp = pad_same(x, k, stride)
    h, wd = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    cols = np.empty((c, k, k, h, wd), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xp[:, i:i + stride * h:stride, j:j + stride * wd:stride]
    return (w.reshape(o, -1) @ cols.reshape(c * k * k, -1)).reshape(o, h, wd)


def _depthwise(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise convolution, w (C, 1, k, k)."""
    k = w.shape[-1]
    xp = pad_same(x, k, stride)
    h, wd = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((x.shape[0], h, wd), np.float32)
    for i in range(k):
        for j in range(k):
            out += w[:, 0, i, j][:, None, None] * xp[:, i:i + stride * h:stride, j:j + stride * wd:stride]
    return out


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def forward(sd: dict[str, np.ndarray], rgb_uint8: np.ndarray) -> np.ndarray:
    """One RGB uint8 image (H, W, 3) -> the 1000 ImageNet logits."""
    x = (rgb_uint8.astype(np.float32).transpose(2, 0, 1) - MEAN) / STD
    x = _relu6(_bn(_conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    i = 0
    while f"_blocks.{i}._project_conv.weight" in sd:
        p, inp = f"_blocks.{i}.", x
        stride = 2 if i in STRIDE2_BLOCKS else 1
        if p + "_expand_conv.weight" in sd:
            x = _relu6(_bn(_conv(x, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0"))
        x = _relu6(_bn(_depthwise(x, sd[p + "_depthwise_conv.weight"], stride), sd, p + "_bn1"))
        x = _bn(_conv(x, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2")
        if x.shape == inp.shape and stride == 1:
            x = x + inp
        i += 1
    x = _relu6(_bn(_conv(x, sd["_conv_head.weight"], 1), sd, "_bn1"))
    return sd["_fc.weight"] @ x.mean(axis=(1, 2)) + sd["_fc.bias"]
