"""The Captioner on the shipped int8 bundle: right captions, any frame kind, options, threads, no TensorFlow."""

import json
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from velm_convert.metrics import exact_match
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.synth import scenes


def test_the_shipped_bundle_is_as_good_as_its_manifest_says_on_fresh_scenes(captioner):
    """2,000 synthetic scenes the manifest's figure was not measured on (its
    evaluation used the first seeds of the held-out range; these start 10,000 later).  The standard
    error of each figure is about 0.6 (2,000) and 1.2 points (500), so 2 points is a real check."""
    manifest = captioner.bundle.manifest["metrics"]
    claimed, used = manifest["bundle"]["exact_match"], manifest["images"]
    assert used <= 10_000
    cfg = scenes.SceneConfig(size=captioner.bundle.manifest["preprocess"]["size"])
    fresh = [scenes.generate(2_000_010_000 + i, cfg) for i in range(2000)]
    got = exact_match([captioner.caption(img).text for img, _ in fresh], [[t] for _, t in fresh])
    assert abs(got - claimed) <= 0.02, f"exact match {got:.3f} on 2,000 fresh scenes, manifest says {claimed:.3f}"


def test_a_caption_carries_tokens_score_and_timings(captioner, held_out):
    c = captioner.caption(held_out[0][0])
    assert c.text == captioner.vocab.decode(c.tokens) and c.complete
    assert c.score < 0
    assert set(c.timings_ms) == {"preprocess", "vision", "decode", "total"}
    assert c.timings_ms["total"] == pytest.approx(sum(v for k, v in c.timings_ms.items() if k != "total"))
    assert json.loads(json.dumps(c.to_json()))["text"] == c.text


def test_every_frame_kind_gives_the_same_caption(captioner, held_out):
    img = cv2.resize(held_out[1][0], (320, 240), interpolation=cv2.INTER_NEAREST)  # a camera-shaped frame
    ref = captioner.caption(img).text
    rgb = Captioner(captioner.bundle, rgb=True)
    assert rgb.caption(img[:, :, ::-1]).text == ref
    bgra = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert captioner.caption(bgra).text == ref
    assert captioner.caption(img.astype(np.uint16) * 257).text == ref
    assert captioner.caption(img.astype(np.float32) / 255).text == ref


def test_bad_frames_raise_value_error(captioner):
    with pytest.raises(ValueError, match="non-empty image"):
        captioner.caption(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN or inf"):
        captioner.caption(np.full((8, 8, 3), np.inf, np.float32))


def test_decode_options_reach_the_decoder(captioner, held_out):
    img = held_out[2][0]
    greedy = captioner.caption(img)
    beam = captioner.caption(img, beam_size=3)
    assert beam.score >= greedy.score - 1e-9  # beam search never finds a less likely caption than greedy
    short = captioner.caption(img, DecodeOptions(max_length=2))
    assert len(short.tokens) == 2 and not short.complete
    long = captioner.caption(img, DecodeOptions(min_length=len(greedy.tokens) + 2))
    assert len(long.tokens) >= len(greedy.tokens) + 2


def test_threads_get_their_own_interpreters_and_the_same_captions(captioner, held_out):
    images = [img for img, _ in held_out[:12]]
    expected = [captioner.caption(img).text for img in images]
    results, graphs, errors = {}, {}, []

    def work(k):
        try:
            results[k] = [captioner.caption(img).text for img in images]
            graphs[k] = captioner.language
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results.values())
    assert len({id(g) for g in graphs.values()} | {id(captioner.language)}) == 4


def test_closed_captioner_refuses_work(shapes_bundle, held_out):
    cap = Captioner.open(shapes_bundle)
    with cap:
        cap.caption(held_out[0][0])
    with pytest.raises(RuntimeError, match="closed"):
        cap.caption(held_out[0][0])


def test_the_runtime_never_imports_tensorflow(shapes_bundle):
    code = ("import sys, numpy as np\n"
            "from velm_edge.runtime.captioner import Captioner\n"
            f"cap = Captioner.open({str(shapes_bundle)!r})\n"
            "cap.caption(np.zeros((240, 320, 3), np.uint8)); cap.caption(np.ones((10, 10), np.uint8), beam_size=2)\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]


def test_a_bundle_that_expects_bgr_gets_bgr(bundle_copy, held_out):
    from velm_edge.runtime.bundle import write_manifest

    img = held_out[3][0]
    with Captioner.open(bundle_copy) as cap:
        rgb_caption = cap.caption(img).text
        swapped = cap.caption(img[:, :, ::-1].copy()).text  # what the graph sees if the order were ignored
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["preprocess"]["color_order"] = "BGR"
    write_manifest(bundle_copy, m)
    with Captioner.open(bundle_copy) as cap:
        assert cap.caption(img[:, :, ::-1].copy()).text == rgb_caption
        assert cap.caption(img).text == swapped
