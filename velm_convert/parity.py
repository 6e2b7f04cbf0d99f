"""Parity of a bundle with its float Keras model, through the same decode code the device runs.

Figures (all on the same held-out images): exact-caption agreement and per-token agreement between
bundle and float captions; exact match, BLEU-4 and CIDEr-D of each against the references; and the
largest error of the bundle's feature, initial state and one-step state against the float model's.
``write_report`` stores them in the manifest (``metrics``) and in a readable ``report.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np

from velm_convert import metrics
from velm_convert.datasets import CaptionSet, progress_bar
from velm_convert.model import Velm
from velm_edge.runtime import bundle as bundle_format
from velm_edge.runtime import preprocess
from velm_edge.runtime.captioner import GROUNDING, Captioner
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.detect import as_tags
from velm_edge.runtime.image_file import read_image
from velm_edge.runtime.quant import dequantize, quantize


def token_agreement(a: list[tuple[int, ...]], b: list[tuple[int, ...]], end_id: int) -> float:
    """Share of positions (each caption with its <end>, up to the longer one) where both have the same token."""
    same = total = 0
    for x, y in zip(a, b):
        x, y = (*x, end_id), (*y, end_id)
        total += max(len(x), len(y))
        same += sum(p == q for p, q in zip(x, y))
    return same / max(total, 1)


def state_errors(cap: Captioner, velm: Velm, images: np.ndarray, seen: list | None = None,
                 steps: int = 4) -> dict[str, float]:
    """Largest |bundle - float| of the feature and initial state, and of the state after one language
    step fed the float model's own inputs (the first ``steps`` greedy steps of each image; ``seen``: each
    image's detections, for a decoder trained on them)."""
    feats, states = velm.encode_images(_float_inputs(cap, images, seen))
    q_feat, q_state = cap.language.qparams("feature"), cap.language.qparams("state")
    q_state_out = cap.language.qparams("state", True)
    table = velm.embedding_table
    err = {"feature": 0.0, "state0": 0.0, "step_state": 0.0}
    for i, (img, f, s) in enumerate(zip(images, feats, states)):
        bf, bs = (e := cap.see(img, None if seen is None else seen[i])).feature, e.state
        err["feature"] = max(err["feature"], float(np.abs(dequantize(bf, q_feat)[0] - f).max()))
        err["state0"] = max(err["state0"], float(np.abs(dequantize(bs, q_state)[0] - s).max()))
        token, state = velm.vocab.start_id, s[None]
        for _ in range(steps):
            ref = velm.step({"embedding": table[[token]], "feature": f[None], "state": state}, training=False)
            ref_state = np.asarray(ref["state"])
            out = cap.language.run(embedding=cap.table[[token]], feature=quantize(f[None], q_feat),
                                   state=quantize(state, q_state))
            err["step_state"] = max(err["step_state"],
                                    float(np.abs(dequantize(out["state"], q_state_out) - ref_state).max()))
            token, state = int(np.asarray(ref["logits"]).argmax()), ref_state
            if token == velm.vocab.end_id:
                break
    return {f"max_abs_error_{k}": round(v, 5) for k, v in err.items()}


def _float_inputs(cap: Captioner, images: np.ndarray, seen: list | None):
    """What the float model takes for ``images``: with detections (``seen``), {"image", "detected"}."""
    floats = preprocess.to_float(images)
    if seen is None:
        return floats
    return {"image": floats, "detected": np.stack([as_tags(d, cap.bundle.decoding.labels) for d in seen])}


def evaluate(bundle_path: str | Path, data: CaptionSet, reference: Velm | None = None,
             options: DecodeOptions = DecodeOptions(), progress: bool = True) -> dict:
    """Caption ``data`` with the bundle (and the float reference, if given) and compare; both decode with
    ``options``, the bundle without grounding (the float model has no classifier to ground with)."""
    like_for_like = dataclasses.replace(options, ground=0.0, time_budget_ms=None)
    with Captioner.open(bundle_path) as cap:  # closed however the comparison ends
        seen = None
        if cap.takes_detections:  # both see the bundle's detections of the whole photo
            if len(data.files) != len(data):
                raise ValueError("a bundle whose decoder takes detections is checked on photos read from files")
            seen = [cap.detect(read_image(f), GROUNDING) for f in data.files]
        bar = progress_bar(len(data), f"captioning {len(data)} images with {Path(bundle_path).name}", progress)
        ours = []
        for i, img in enumerate(data.images):
            # like for like with the float model (benchmarks/wider_world.py measures the bundle's own decoding)
            ours.append(cap.decode_encoded(cap.encode_rgb(img, None if seen is None else seen[i]), like_for_like))
            bar.update(1)
        bar.close()
        texts = [c.text for c in ours]
        result = {"images": len(data), "data": data.source, "beam_size": options.beam_size,
                  "length_penalty": options.length_penalty,
                  "precision": cap.bundle.precision,
                  "bundle": metrics.score(texts, data.captions),
                  "decode_ms_mean": round(float(np.mean([c.timings_ms["decode"] for c in ours])), 3),
                  "vision_ms_mean": round(float(np.mean([c.timings_ms["vision"] for c in ours])), 3)}
        if reference is not None:
            ref = reference.caption_arrays(_float_inputs(cap, data.images, seen), like_for_like)
            result["float"] = metrics.score([reference.vocab.decode(d.tokens) for d in ref], data.captions)
            result["agreement"] = {
                "exact_caption": round(float(np.mean([a.tokens == b.tokens for a, b in zip(ours, ref)])), 4),
                "token": round(token_agreement([c.tokens for c in ours], [d.tokens for d in ref],
                                               reference.vocab.end_id), 4),
            }
            result["relative_change"] = {k: round((result["bundle"][k] - result["float"][k])
                                                  / max(abs(result["float"][k]), 1e-12), 4) for k in ("bleu4", "cider")}
            k = min(100, len(data))
            result["errors"] = state_errors(cap, reference, data.images[:k], None if seen is None else seen[:k])
            result["disagreements"] = [{"bundle": c.text, "float": reference.vocab.decode(d.tokens), "truth": refs[0]}
                                       for c, d, refs in zip(ours, ref, data.captions) if c.tokens != d.tokens][:20]
    return result


def write_report(bundle_path: str | Path, result: dict) -> Path:
    """Put the figures into the manifest (``metrics``) and a readable report.md; refresh the checksums."""
    root = Path(bundle_path)
    manifest = bundle_format.read_manifest(root)
    manifest["metrics"] = {k: v for k, v in result.items() if k != "disagreements"}
    (root / "report.md").write_text(report_text(manifest, result))
    bundle_format.write_manifest(root, manifest)
    return root / "report.md"


def report_text(manifest: dict, r: dict) -> str:
    decoding = "greedy" if r["beam_size"] <= 1 else \
        f"beam {r['beam_size']}, length penalty {r.get('length_penalty', 0.0):g}"
    lines = [f"# {manifest['name']}: {manifest['precision']} bundle report", "",
             f"Evaluated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} on {r['images']} images "
             f"({r['data']}), {decoding} decoding.", "",
             "## Quality against the references", "",
             metrics.table({k: r[k] for k in ("float", "bundle") if k in r}), ""]
    if "agreement" in r:
        a, e, rel = r["agreement"], r["errors"], r["relative_change"]
        lines += ["## Bundle vs float model", "",
                  f"- identical captions: {a['exact_caption']:.1%}",
                  f"- identical tokens: {a['token']:.2%}",
                  f"- BLEU-4 change: {rel['bleu4']:+.2%}, CIDEr-D change: {rel['cider']:+.2%}",
                  f"- largest error: feature {e['max_abs_error_feature']}, initial state "
                  f"{e['max_abs_error_state0']}, state after one step {e['max_abs_error_step_state']}", ""]
        if r.get("disagreements"):
            lines += ["Captions that differ (first 20):", ""]
            lines += [f"- bundle `{d['bundle']}` / float `{d['float']}` / truth `{d['truth']}`"
                      for d in r["disagreements"]]
            lines.append("")
    files = manifest["files"]
    lines += ["## Files", "", "| file | bytes |", "|---|---:|"]
    lines += [f"| {name} | {entry['bytes']} |" for name, entry in sorted(files.items())]
    lines += ["", "## Graphs", "", "```json", json.dumps(manifest.get("op_check", {}), indent=1), "```", ""]
    return "\n".join(lines)
