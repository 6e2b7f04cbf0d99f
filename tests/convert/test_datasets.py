import json
import warnings

import cv2
import numpy as np
import pytest

from velm_convert import datasets
from velm_edge.synth import scenes


@pytest.fixture()
def folder(tmp_path):
    """Six real scene images, one garbage .jpg; captions for those plus a missing file."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    truth = {}
    for i in range(6):
        img, cap = scenes.generate(i)
        cv2.imwrite(str(img_dir / f"img{i}.png"), img)
        truth[f"img{i}.png"] = cap
    (img_dir / "broken.jpg").write_bytes(b"this is not a jpeg")
    return tmp_path, img_dir, truth


def records(truth):
    """(file, caption) records: every good image twice (two references), plus bad ones."""
    good = [(name, cap) for name, cap in truth.items()] + [(name, cap.upper() + ".") for name, cap in truth.items()]
    bad = [("missing.png", "a caption for nothing"), ("broken.jpg", "an unreadable file"), ("img0.png", "  ... ")]
    return good, bad


def write_coco(path, recs):
    names = sorted({n for n, _ in recs})
    ids = {n: i + 1 for i, n in enumerate(names)}
    path.write_text(json.dumps({
        "images": [{"id": ids[n], "file_name": n} for n in names],
        "annotations": [{"id": k, "image_id": ids[n], "caption": c} for k, (n, c) in enumerate(recs)]
        + [{"id": 999, "image_id": 12345, "caption": "image id without an image"}],
    }))


def write_flickr(path, recs):
    path.write_text("".join(f"{n}#{k}\t{c}\n" for k, (n, c) in enumerate(recs)) + "\n")


def write_csv(path, recs):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image", "Caption"])
        w.writerows(recs)


def write_jsonl(path, recs):
    path.write_text("".join(json.dumps({"file_name": n, "text": c}) + "\n" for n, c in recs) + "{not json\n")


WRITERS = {"coco": ("captions.json", write_coco), "flickr": ("Flickr8k.token.txt", write_flickr),
           "csv": ("captions.csv", write_csv), "jsonl": ("captions.jsonl", write_jsonl)}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_loads_good_records_and_counts_bad_ones(folder, fmt):
    root, img_dir, truth = folder
    good, bad = records(truth)
    name, writer = WRITERS[fmt]
    writer(root / name, good + bad)
    with pytest.warns(UserWarning, match="skipped"):
        data = datasets.load_captions(root / name, img_dir, image_size=64)  # format guessed from the name
    assert len(data) == 6
    assert data.images.shape == (6, 64, 64, 3) and data.images.dtype == np.uint8
    assert all(len(c) == 2 for c in data.captions)
    assert data.captions[0][0] == truth["img0.png"]
    assert data.skipped["missing image"] == 1
    assert data.skipped["unreadable image"] == 1
    assert data.skipped["empty caption"] == 1
    # the image is the file, resized and converted to RGB by the device's own preprocessing
    expected = cv2.cvtColor(cv2.resize(cv2.imread(str(img_dir / "img0.png")), (64, 64), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(data.images[0], expected)


def test_a_file_without_usable_records_is_a_clear_error(folder):
    root, img_dir, truth = folder
    _, bad = records(truth)
    write_csv(root / "bad.csv", bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(datasets.DatasetError, match="no usable record"):
            datasets.load_captions(root / "bad.csv", img_dir)


def test_missing_files_wrong_columns_and_unknown_formats(folder, tmp_path):
    root, img_dir, _ = folder
    with pytest.raises(datasets.DatasetError, match="caption file not found"):
        datasets.load_captions(tmp_path / "nope.csv", img_dir)
    (root / "cols.csv").write_text("picture,words\na.png,hello\n")
    with pytest.raises(datasets.DatasetError, match="needs an image column"):
        datasets.load_captions(root / "cols.csv", img_dir)
    (root / "data.parquet").write_text("x")
    with pytest.raises(datasets.DatasetError, match="cannot tell the format"):
        datasets.load_captions(root / "data.parquet", img_dir)
    (root / "c.csv").write_text("image,caption\nimg0.png,a cat\n")
    with pytest.raises(datasets.DatasetError, match="image folder not found"):
        datasets.load_captions(root / "c.csv", root / "no-such-folder")
    (root / "bad.json").write_text("[1, 2]")
    with pytest.raises(datasets.DatasetError, match="needs 'images' and 'annotations'"):
        datasets.load_captions(root / "bad.json", img_dir)


def test_synthetic_sets_are_deterministic_whatever_the_workers():
    a = datasets.synthetic(40, start_seed=10, workers=1)
    b = datasets.synthetic(40, start_seed=10, workers=2)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions
    img, cap = scenes.generate(12)
    np.testing.assert_array_equal(a.images[2], cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    assert a.captions[2] == [cap]
    chunks = list(datasets.iter_synthetic(10, 40, chunk=15))
    assert [len(c[1]) for c in chunks] == [15, 15, 10]
    assert sum((c[1] for c in chunks), []) == [c[0] for c in a.captions]


def test_split_keeps_all_captions_of_an_image_together():
    data = datasets.CaptionSet(np.zeros((20, 8, 8, 3), np.uint8), [[f"c{i}", f"d{i}"] for i in range(20)])
    data.images[:, 0, 0, 0] = np.arange(20)
    train, val = data.split(0.25, seed=1)
    assert len(train) == 15 and len(val) == 5
    for part in (train, val):
        for img, caps in zip(part.images, part.captions):
            assert caps == [f"c{img[0, 0, 0]}", f"d{img[0, 0, 0]}"]
    with pytest.raises(datasets.DatasetError, match="too few"):
        datasets.CaptionSet(np.zeros((1, 8, 8, 3), np.uint8), [["a"]]).split(0.5)


def test_training_reads_photos_upright_like_the_device(sideways):
    """Training, export and the device share one reader: an EXIF-rotated phone photo is seen upright."""
    from velm_edge.runtime import preprocess
    from velm_edge.runtime.image_file import read_image

    fs = datasets.FileSet([sideways], [["a red and black picture"]], "test")
    data = datasets.load_images(fs, 48)
    upright = read_image(sideways)
    assert upright.shape[:2] == (96, 64)
    np.testing.assert_array_equal(data.images[0], preprocess.prepare(upright, 48))
    assert data.images[0][:16, :, 0].mean() > 200  # red (RGB) on top, as displayed
