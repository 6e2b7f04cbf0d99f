"""The .tflite reader and cost model: MACs and weight bytes of the shipped graphs against a hand count."""

import json

import pytest

from velm_edge.tools import tflite_model
from velm_edge.tools.info import bundle_info


def hand_count(cfg: dict) -> dict:
    """Count the default architecture by hand from its configuration: 3x3 'same' convolutions, each followed
    by a 2x2 max pool, flatten, Dense feature, Dense initial state; one GRU step with par-inject and logits."""
    side, cin, macs, weights = cfg["image_size"], 3, 0, 0
    for cout in cfg["seed_filters"]:
        macs += side * side * cout * 3 * 3 * cin
        weights += cout * 3 * 3 * cin + 4 * cout  # int8 kernel + int32 bias
        side, cin = side // 2, cout
    flat, f, s, e, v = side * side * cin, cfg["feature_dim"], cfg["units"], cfg["embed_dim"], cfg["vocab_size"]
    macs += flat * f + f * s
    weights += flat * f + 4 * f + f * s + 4 * s + 2 * 4  # + the reshape's int32 target shape
    step = 3 * (e + f) * s + 3 * s * s + s * v  # three gates over [embedding, feature] and over the state; logits
    return {"vision_macs": macs, "vision_weight_bytes": weights, "step_macs": step}


def test_info_reports_macs_and_weights_that_match_a_hand_count(shapes_bundle):
    manifest = json.loads((shapes_bundle / "manifest.json").read_text())
    expected = hand_count(manifest["model"]["config"])
    assert expected["vision_macs"] == 21_671_936 and expected["step_macs"] == 453_120  # the numbers, written out
    info = bundle_info(shapes_bundle)
    vision, language = info["graphs"]["vision"]["cost"], info["graphs"]["language"]["cost"]
    assert vision["macs"] == expected["vision_macs"]
    assert vision["weight_bytes"] == expected["vision_weight_bytes"]
    assert language["macs"] == expected["step_macs"]
    assert vision["macs_by_op"]["CONV_2D"] + vision["macs_by_op"]["FULLY_CONNECTED"] == vision["macs"]
    # activations: the first convolution's output (80x80x16 int8) and its input are alive together
    assert 80 * 80 * (16 + 3) <= vision["peak_activation_bytes"] <= vision["activation_bytes"]
    assert language["peak_activation_bytes"] < 4096


def test_the_reader_refuses_what_is_not_a_tflite_file(shapes_bundle):
    data = (shapes_bundle / "vision.tflite").read_bytes()
    for bad in (b"", b"\x00" * 64, data[:100], b"\x10\x00\x00\x00TFL3" + b"\xff" * 50):
        with pytest.raises(ValueError):
            tflite_model.read(bad)
