"""``velm-edge bench``: where a caption's time goes, per stage, on this machine.

Stages of a caption from a camera-sized BGR frame (640x480 by default, ``--frame WxH``): preprocess
(colour, resize, quantize), vision (one graph run), detect (the detector graph with its letterbox, box decoding
and NMS, for bundles that have one), decode (every language step, lookups and search
bookkeeping), and the whole caption; each as median and p95 over the frames.  The interpreter's own
time (``invoke``) is summed separately: ``glue`` = whole caption - interpreter time (preprocessing
included), ``python_glue`` = glue - preprocessing (lookups, tensor copies, search bookkeeping);
``decode_step`` is the decode over the language graph's invokes (its Python included), ``decode_invoke``
the interpreter's own time of one of those invokes.
Cold start is measured in fresh processes (import, open the bundle, first caption) with their peak
resident memory.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from velm_edge.errors import VelmError
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.detect import DetectOptions
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.synth import scenes


def frames(n: int, width: int = 640, height: int = 480, seed: int = 7_000_000) -> list[np.ndarray]:
    """Synthetic scenes stretched to a camera-sized BGR frame."""
    cfg = scenes.SceneConfig(size=min(width, height))
    return [cv2.resize(scenes.generate(seed + i, cfg)[0], (width, height)) for i in range(n)]


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"median": round(float(np.median(a)), 4), "p95": round(float(np.percentile(a, 95)), 4)}


def measure(cap: Captioner, images: list[np.ndarray], options: DecodeOptions | None = None, warmup: int = 3) -> dict:
    """Per-stage timings of captioning ``images`` (after ``warmup`` untimed captions)."""
    for img in images[:warmup]:
        cap.caption(img, options)
    vision, language, detector = cap.vision, cap.language, cap.detector_graph
    graphs = [g for g in (vision, language, detector) if g is not None]
    rows = {"preprocess": [], "vision": [], "decode": [], "decode_step": [], "decode_invoke": [], "caption": [],
            "interpreter": [], "glue": [], "python_glue": []}
    if detector is not None and cap.detection.detect:
        rows["detect"] = []
    steps = 0
    for img in images:
        inv0, lang0 = sum(g.invoke_seconds for g in graphs), language.invoke_seconds
        n0 = language.invokes
        t0 = time.perf_counter()
        c = cap.caption(img, options)
        total = (time.perf_counter() - t0) * 1e3
        interp = (sum(g.invoke_seconds for g in graphs) - inv0) * 1e3
        n = language.invokes - n0
        steps += n
        rows["preprocess"].append(c.timings_ms["preprocess"])
        rows["vision"].append(c.timings_ms["vision"])
        if "detect" in rows:
            rows["detect"].append(c.timings_ms["detect"])
        rows["decode"].append(c.timings_ms["decode"])
        rows["decode_step"].append(c.timings_ms["decode"] / max(n, 1))
        rows["decode_invoke"].append((language.invoke_seconds - lang0) * 1e3 / max(n, 1))
        rows["caption"].append(total)
        rows["interpreter"].append(interp)
        rows["glue"].append(total - interp)
        rows["python_glue"].append(total - interp - c.timings_ms["preprocess"])
    out = {k: stats(v) for k, v in rows.items()}
    out["glue_share"] = round(float(np.sum(rows["glue"]) / np.sum(rows["caption"])), 4)
    out["python_glue_share"] = round(float(np.sum(rows["python_glue"]) / np.sum(rows["caption"])), 4)
    out["steps_per_caption"] = round(steps / len(images), 2)
    out["captions_per_s"] = round(1e3 / out["caption"]["median"], 1)
    return out


def cold_start(bundle: str | Path, runs: int = 5, runtime: RuntimeOptions | None = None) -> dict:
    """Fresh processes: wall time from spawn to the first caption's exit, and peak RSS (MB)."""
    runtime = runtime or RuntimeOptions()
    walls, rss, phases = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "velm_edge.tools.cold_start", str(bundle), runtime.backend,
                              runtime.device],
                             capture_output=True, text=True, timeout=120)
        walls.append(time.perf_counter() - t0)
        if out.returncode:
            raise VelmError(f"cold-start probe failed: {out.stderr.strip()[-1000:]}")
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        rss.append(probe.pop("peak_rss_mb"))
        if probe.pop("tensorflow_imported"):
            raise VelmError("the runtime imported tensorflow: it must not (check the interpreter backend)")
        phases.append(probe)
    return {"runs": runs, "wall_s": stats(walls), "peak_rss_mb": round(float(max(rss)), 1),
            "phases_s": {k: round(float(np.median([p[k] for p in phases])), 4) for k in phases[0]}}


def run(bundle: str | Path, runtime: RuntimeOptions | None = None, options: DecodeOptions | None = None,
        images: int = 50, cold_runs: int = 5, frame: tuple[int, int] = (640, 480),
        detection: DetectOptions | None = None) -> dict:
    data = frames(images, *frame)
    with Captioner.open(bundle, runtime, detection=detection) as cap:
        result = {"bundle": str(bundle), "precision": cap.bundle.precision, "runtime": cap.info,
                  "threads": {"vision": cap.vision.threads, "language": cap.language.threads},
                  "images": images, "frame": f"{frame[0]}x{frame[1]} BGR", **measure(cap, data, options)}
    result["cold_start"] = cold_start(bundle, cold_runs, runtime) if cold_runs else None
    return result


def sweep(bundle: str | Path, counts: list[int], runtime: RuntimeOptions | None = None,
          options: DecodeOptions | None = None, images: int = 30, frame: tuple[int, int] = (640, 480),
          rounds: int = 3) -> list[dict]:
    """Vision, decode and whole-caption medians for every pair of interpreter thread counts (vision graph,
    language graph) from ``counts``: the two graphs need not want the same (a convolution stack gains from a
    thread pool, a decoder step may not).  Every pair's captioner is open at once and they take turns, a round
    of the frames each, ``rounds`` times: a machine whose speed drifts (a VM with neighbours) slows them all
    alike.  Each figure is the median over the rounds of the round's median."""
    data = frames(images, *frame)
    runtime = runtime or RuntimeOptions()
    pairs = [(v, lang) for v in counts for lang in counts]
    caps = [Captioner.open(bundle, dataclasses.replace(runtime, threads=v, language_threads=lang)) for v, lang in pairs]
    measured: list[list[dict]] = [[] for _ in pairs]
    try:
        for _ in range(rounds):
            for cap, results in zip(caps, measured):
                results.append(measure(cap, data, options))
    finally:
        for cap in caps:
            cap.close()
    rows = []
    for (vision_threads, language_threads), results in zip(pairs, measured):
        row = {k: float(np.median([r[k]["median"] for r in results])) for k in ("vision", "decode", "caption")}
        rows.append({"vision_threads": vision_threads, "language_threads": language_threads, **row,
                     "captions_per_s": round(1e3 / row["caption"], 1)})
    return rows


def format_sweep(rows: list[dict]) -> str:
    lines = [f"{'vision threads':>14s} {'language threads':>16s} {'vision ms':>10s} {'decode ms':>10s} "
             f"{'caption ms':>11s} {'captions/s':>11s}"]
    best = min(rows, key=lambda r: r["caption"])
    for r in rows:
        lines.append(f"{r['vision_threads']:14d} {r['language_threads']:16d} {r['vision']:10.2f} {r['decode']:10.2f} "
                     f"{r['caption']:11.2f} {r['captions_per_s']:11.1f}" + ("  <- fastest" if r is best else ""))
    return "\n".join(lines)


STAGES = ("preprocess", "vision", "detect", "decode_step", "decode_invoke", "decode", "caption", "interpreter", "glue",
          "python_glue")


def format_result(r: dict, against: dict | None = None) -> str:
    head = f"{r['bundle']} ({r['precision']}, {r['runtime']['backend']}, {r['images']} frames of {r['frame']})"
    columns = f"{'stage (ms)':14s} {'median':>9s} {'p95':>9s}"
    lines = [head, columns + (f" {'other':>9s} {'ratio':>7s}" if against else "")]
    for k in STAGES:
        if k not in r:  # detect: bundles with a detector only
            continue
        line = f"{k:14s} {r[k]['median']:9.3f} {r[k]['p95']:9.3f}"
        if against and k in against:
            o = against[k]["median"]
            line += f" {o:9.3f} {o / r[k]['median'] if r[k]['median'] else float('nan'):6.2f}x"
        lines.append(line)
    lines.append(f"outside the interpreter: {100 * r['glue_share']:.1f}% of a caption, of which Python (lookups, "
                 f"copies, search) {100 * r['python_glue_share']:.1f}% and preprocessing (OpenCV) the rest; "
                 f"{r['steps_per_caption']} decode steps per caption; {r['captions_per_s']} captions/s")
    if against:
        lines.append(f"ratio = {against['bundle']} ({against['precision']}) / this bundle: above 1 means this one "
                     f"is faster")
    cs = r.get("cold_start")
    if cs:
        p = cs["phases_s"]
        lines.append(f"cold start (new process, {cs['runs']} runs): median {cs['wall_s']['median']:.3f} s "
                     f"(import {p['import']:.3f}, open {p['open']:.3f}, first caption {p['first_caption']:.3f}); "
                     f"peak RSS {cs['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)

