"""Beams as one batch (velm_edge.runtime.batching): the language graph with its batch freed gives, row for row,
exactly what the batch-of-one graph gives, and a beam search run that way makes token-for-token the captions
of the row-by-row search, with fewer invokes where the batch pays."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from velm_edge.runtime import batching
from velm_edge.runtime.bundle import Bundle, resolve
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.graph import Graph
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.synth import scenes

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((ROOT / "velm_edge" / "samples").glob("*.jpg"))
COCO = ROOT.parent / "shared" / "data" / "coco-sample"


@pytest.mark.parametrize("name", ["photo", "shapes"])
@pytest.mark.parametrize("rows", [2, 3, 5])
def test_the_freed_graph_gives_each_row_exactly_the_single_row_answer(name, rows):
    bundle = Bundle.load(resolve(name))
    freed = batching.rows_free(bundle.language)
    assert freed is not None and freed != bundle.language  # both shipped graphs squeeze their batch of one
    single = Graph(bundle.language, "single", RuntimeOptions(threads=1))
    batch = Graph(freed, "batch", RuntimeOptions(threads=1))
    batch.resize_rows(rows)
    assert batch.rows == rows
    for seed in range(3):
        assert batching.same_rows(single, batch, rows, seed)


def test_the_unfreed_graph_cannot_take_rows():
    """Without rows_free the batch-of-one graph refuses more rows: the freeing is what makes resizing sound."""
    bundle = Bundle.load(resolve("photo"))
    graph = Graph(bundle.language, "unfreed", RuntimeOptions(threads=1))
    with pytest.raises((RuntimeError, ValueError)):
        graph.resize_rows(3)


def test_a_reshape_that_is_not_a_squeeze_of_the_batch_is_not_freed():
    bundle = Bundle.load(resolve("shapes"))
    assert batching.rows_free(bundle.vision) is None  # its reshapes change more than the batch
    assert batching.rows_free(b"not a model") is None


def frames() -> list[np.ndarray]:
    """The sample photos, 12 synthetic scenes and, when present, 20 coco-sample photos."""
    images = [cv2.imread(str(p)) for p in SAMPLES]
    images += [scenes.generate(9_000 + i, scenes.SceneConfig(size=160))[0] for i in range(12)]
    images += [cv2.imread(str(p)) for p in sorted(COCO.rglob("*.jpg"))[:20]]
    return images


@pytest.mark.parametrize("name", ["photo", "shapes"])
def test_batched_beams_make_the_row_by_row_captions_token_for_token(name):
    with Captioner.open(name, RuntimeOptions(batch_beams=False)) as rows, \
            Captioner.open(name, RuntimeOptions(batch_beams=True)) as batched:
        # where the batch does not pay (tflite-runtime 2.14) both run row by row: the samples show it, the whole set
        # is for where the batched path really runs
        images = frames() if batched.batches(3) else frames()[:len(SAMPLES)]
        for options in (batched.options, batched.options.override(beam_size=5), DecodeOptions(beam_size=2)):
            expected = [rows.caption(im, options) for im in images]
            got = [batched.caption(im, options) for im in images]
            assert [c.tokens for c in got] == [c.tokens for c in expected]
            assert [c.score for c in got] == [c.score for c in expected]
        row_invokes, batch_invokes = rows.language.invokes, batched.language.invokes
        if batched.batches(2):  # the batch paid here: one invoke a step
            assert batch_invokes < 0.6 * row_invokes, (batch_invokes, row_invokes)
        else:
            assert batch_invokes == row_invokes
        if name == "photo" and batched.info["backend"] == "ai_edge_litert":  # XNNPACK: 3 rows of the photo
            assert batched.batches(3)  # graph's 3.9 MB cost little more than one
        # (the shapes graph is so small that per-call overhead rules: whether 3 rows pay there varies from
        # run to run, 3 of 8 measurements in a row, and either way the captions are the same)
