"""The Keras VELM: step/sequence parity, save/load, training, backbones, MAC budget."""

import json
import zipfile

import numpy as np
import pytest

from velm_edge.runtime.decode import DecodeOptions

keras = pytest.importorskip("keras")

from velm_convert.config import ModelConfig, TrainConfig  # noqa: E402
from velm_convert.model import Velm, build, count_macs, step_model, vision_model  # noqa: E402
from velm_edge.runtime.tokenizer import Vocab  # noqa: E402


def teacher_forced_step_logits(model, images, tokens):
    """Run the step model over the same tokens the sequence model sees."""
    vis = vision_model(model)(images)
    step = step_model(model)
    table = np.asarray(model.get_layer("embedding").embeddings)
    state = np.asarray(vis["state"])
    out = []
    for t in range(tokens.shape[1]):
        o = step({"embedding": table[tokens[:, t]], "feature": np.asarray(vis["feature"]), "state": state})
        state = np.asarray(o["state"])
        out.append(np.asarray(o["logits"]))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("backbone", ["seed", "mobilenet_v3_small"])
def test_step_decoder_reproduces_sequence_logits(backbone):
    keras.utils.set_random_seed(1)
    cfg = ModelConfig(vocab_size=30, max_length=9, image_size=64, backbone=backbone, dropout=0.0)
    model = build(cfg)
    # make the recurrent weights matter: untrained GRUs are close to linear around zero
    for w in model.get_layer("gru").weights:
        w.assign(np.random.default_rng(0).normal(0, 0.3, w.shape).astype("float32"))
    rng = np.random.default_rng(0)
    images = rng.random((4, 64, 64, 3)).astype("float32")
    tokens = rng.integers(0, 30, (4, cfg.steps)).astype("int32")
    seq = np.asarray(model({"image": images, "tokens": tokens}, training=False))
    steps = teacher_forced_step_logits(model, images, tokens)
    assert np.abs(seq - steps).max() <= 1e-4
    assert np.abs(seq).max() > 0.1  # not trivially zero


def test_mac_budget_of_the_default_configuration():
    cfg = TrainConfig().model_config(vocab_size=48)
    macs = count_macs(build(cfg), cfg)
    # Pi 4 at 10 captions/s: about 50 M multiply-accumulates per caption, vision and all steps
    assert macs["caption"] <= 50e6
    assert macs["vision"] > 10 * macs["decoder_step"] > 0
    assert macs["caption"] == macs["vision"] + cfg.steps * macs["decoder_step"]


def test_tiny_training_lowers_the_loss_and_writes_its_outputs(tiny_run):
    out, velm = tiny_run
    import csv

    rows = list(csv.DictReader(open(out / "history.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.8
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    for name in ("model.keras", "checkpoint.keras", "curve.png", "train.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "train.json").read_text())
    assert info["train_images"] == 768 and info["val_metrics"]["images"] == 64
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_keras_round_trip_gives_identical_captions(tiny_run, tmp_path):
    out, velm = tiny_run
    loaded = Velm.load(out / "model.keras")
    weight_bytes = 4 * velm.model.count_params()
    assert (out / "model.keras").stat().st_size < 1.5 * weight_bytes  # no optimizer state inside
    assert loaded.vocab == velm.vocab and loaded.config == velm.config
    images = np.random.default_rng(3).random((8, 64, 64, 3)).astype("float32")
    assert loaded.caption(images) == velm.caption(images)
    assert loaded.caption(images, DecodeOptions(beam_size=3)) == velm.caption(images, DecodeOptions(beam_size=3))
    # a plain Keras load works too: the extra files do not disturb keras.models.load_model
    plain = keras.models.load_model(out / "model.keras", compile=False)
    assert len(plain.weights) == len(velm.model.weights)
    with zipfile.ZipFile(out / "model.keras") as z:
        assert Vocab.from_text(z.read("velm/vocab.txt").decode()) == velm.vocab


def test_beam_and_greedy_scores_are_log_probabilities(tiny_run):
    _, velm = tiny_run
    images = np.random.default_rng(4).random((3, 64, 64, 3)).astype("float32")
    greedy = velm.caption_arrays(images)
    beam = velm.caption_arrays(images, DecodeOptions(beam_size=4))
    for g, b in zip(greedy, beam):
        assert b.score >= g.score - 1e-4 and g.score <= 0  # batch sizes differ: float noise


def test_load_refuses_files_that_are_not_velm_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        Velm.load(tmp_path / "missing.keras")
    plain = tmp_path / "plain.keras"
    i = keras.Input((3,))
    keras.Model(i, keras.layers.Dense(2)(i)).save(plain)
    with pytest.raises(ValueError, match="not a VELM .keras file"):
        Velm.load(plain)
    with pytest.raises(ValueError, match="end in .keras"):
        Velm(build(ModelConfig(vocab_size=5, max_length=4, image_size=32)), Vocab.build(["a"]),
             ModelConfig(vocab_size=5, max_length=4, image_size=32)).save(tmp_path / "m.h5")


def test_learning_rate_follows_the_cosine_over_steps_or_time(monkeypatch):
    from velm_convert import train as train_module

    clock = [100.0]
    monkeypatch.setattr(train_module.time, "monotonic", lambda: clock[0])
    sched = train_module.CosineOnBudget(1e-3, total_steps=100, minutes=None, alpha=0.05)
    sched.on_train_begin()
    assert sched.rate() == pytest.approx(1e-3)
    sched.step = 50
    assert sched.rate() == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    sched.step = 100
    assert sched.rate() == pytest.approx(5e-5)
    timed = train_module.CosineOnBudget(1e-3, total_steps=100, minutes=1.0, alpha=0.05)
    timed.on_train_begin()
    timed.step = 10
    clock[0] += 30  # half the time budget, a tenth of the steps: time wins
    assert timed.progress() == pytest.approx(0.5)
    clock[0] += 60
    assert timed.rate() == pytest.approx(5e-5)  # past the budget: the floor, never below
