"""``velm-edge info``: what a bundle holds, read from the bundle itself (manifest, graphs, sizes, figures)."""

from __future__ import annotations

from pathlib import Path

from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.tools import tflite_model


def bundle_info(path: str | Path, runtime: RuntimeOptions | None = None, isolate: bool = False) -> dict:
    """Everything worth knowing about a bundle, after it loaded and passed every check."""
    with Captioner.open(path, runtime, isolate=isolate) as cap:
        m = cap.bundle.manifest
        graphs = {}
        detector = cap.detector_graph
        named = [("vision", cap.vision), ("language", cap.language)] + ([("detector", detector)] if detector else [])
        for name, g in named:
            graphs[name] = {
                "bytes": m["files"][f"{name}.tflite"]["bytes"],
                "cost": tflite_model.cost(tflite_model.read(getattr(cap.bundle, name))),
                "inputs": {k: _tensor(g, k, False) for k in sorted(g.inputs)},
                "outputs": {k: _tensor(g, k, True) for k in sorted(g.outputs)},
                "ops": g.ops(),
            }
        interpreter = cap.info
        table = cap.bundle.words
        classes = None if table is None else {"classes": len(table),
                                              "with_a_word": sum(w is not None for w in table.class_words)}
    model = m.get("model") or {}
    return {
        "path": str(path), "name": m.get("name"), "created": m.get("created"), "precision": m["precision"],
        "tools": m.get("tools"), "interpreter": interpreter,
        "preprocess": m["preprocess"], "vocab_size": m["vocab_size"], "max_length": m["max_length"],
        "sizes": {k: m[k] for k in ("feature_size", "state_size", "embedding_size")},
        "files": {k: v["bytes"] for k, v in m["files"].items()},
        "total_bytes": sum(v["bytes"] for v in m["files"].values()),
        "graphs": graphs,
        "model": {k: model.get(k) for k in ("backbone", "parameters", "macs", "dataset", "train_images")},
        "metrics": m.get("metrics") or {},
        "training": m.get("training"), "decoding": m.get("decoding"), "grounding": classes,
        "edgetpu": m.get("edgetpu"), "detector": _detector(m.get("detector")),
        "decoder_takes_detections": "detected" in graphs["vision"]["inputs"],
    }


def _detector(section: dict | None) -> dict | None:
    """What the detector section says of the model, its decoding and where it came from."""
    if section is None:
        return None
    keep = ("model", "size", "color_order", "strides", "min_score", "iou", "int8_vs_float", "source")
    return {**{k: section.get(k) for k in keep}, "labels": len(section["labels"])}


def _tensor(g, name: str, output: bool) -> dict:
    q = g.qparams(name, output)
    return {"shape": list(g.shape(name, output)), "dtype": q.dtype,
            **({"scale": q.scale, "zero_point": q.zero_point} if q.quantized else {})}


def format_info(info: dict) -> str:
    """The report as text for people."""
    lines = [f"bundle     {info['path']}  ({info['name']}, {info['precision']}, created {info['created']})",
             f"runs on    {info['interpreter']['backend']} ({info['interpreter']['device']})",
             f"input      {info['preprocess']['size']}x{info['preprocess']['size']} "
             f"{info['preprocess']['color_order']}, resize {info['preprocess']['resize']}",
             f"vocabulary {info['vocab_size']} tokens, captions up to {info['max_length'] - 2} words",
             f"sizes      feature {info['sizes']['feature_size']}, state {info['sizes']['state_size']}, "
             f"embedding {info['sizes']['embedding_size']}",
             f"files      {info['total_bytes'] / 1e6:.2f} MB: "
             + ", ".join(f"{k} {v / 1e3:.1f} kB" for k, v in sorted(info["files"].items()))]
    for name, g in info["graphs"].items():
        io = "; ".join(f"{k} {tuple(t['shape'])} {t['dtype']}" for k, t in {**g["inputs"], **g["outputs"]}.items())
        lines.append(f"{name:10s} {g['bytes'] / 1e3:.1f} kB  {io}")
        lines.append(f"{'':10s} ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(g["ops"].items())))
        c = g["cost"]
        lines.append(f"{'':10s} cost: {c['macs'] / 1e6:.2f} M MACs, weights {c['weight_bytes'] / 1e3:.1f} kB, "
                     f"activations {c['activation_bytes'] / 1e3:.1f} kB (at most {c['peak_activation_bytes'] / 1e3:.1f}"
                     f" kB alive at once)")
    model = info["model"]
    if model.get("parameters"):
        macs = model.get("macs") or {}
        lines.append(f"model      {model.get('backbone')} backbone, {model['parameters']:,} parameters, "
                     f"{macs.get('caption', 0) / 1e6:.1f} M MACs per caption of {info['max_length'] - 1} steps, "
                     f"trained on {model.get('dataset')}")
    training = info.get("training") or {}
    if training:
        lines.append(f"trained on {training.get('data')}")
        lines.append(f"terms      {training.get('terms')}")
        if training.get("pretrained_weights"):
            w = training["pretrained_weights"]
            lines.append(f"weights    {w.get('what')}")
    d = info.get("decoding")
    if d:
        lines.append("decoding   " + ("greedy" if d["beam_size"] == 1 else
                                      f"beam search {d['beam_size']}, length penalty {d['length_penalty']:g}")
                     + (f", no repeated {d['no_repeat_ngram']}-gram" if d.get("no_repeat_ngram") else "")
                     + " (the bundle's recommendation; --beam-size overrides it)")
    g = info.get("grounding")
    if g:
        ground = (d or {}).get("ground", 0.5)
        lines.append(f"grounding  {g['classes']} ImageNet classes in the vision graph, {g['with_a_word']} with a "
                     f"caption word (classes.json); a word they give {ground:g} steers the caption (--ground)")
    det = info.get("detector")
    if det:
        a = det.get("int8_vs_float") or {}
        lines.append(f"detector   {det['model']}: {det['labels']} COCO labels, {det['size']}x{det['size']} "
                     f"{det['color_order']} letterboxed, score >= {det['min_score']:g}, NMS IoU {det['iou']:g}"
                     + (f"; int8 against float: precision {a.get('precision')}, recall {a.get('recall')}" if a else ""))
        if det.get("source"):
            lines.append(f"{'':10s} from {det['source'].get('package')}: {det['source'].get('licence')}")
        lines.append(f"{'':10s} " + ("the decoder was trained on its detections: the vision graph takes them, so it "
                                     "runs for every caption" if info.get("decoder_takes_detections") else
                                     "captions are grounded in its detections at decode time"))
    metrics = info["metrics"]
    if metrics.get("bundle"):
        b = metrics["bundle"]
        beam = metrics.get("beam_size", 1)
        line = (f"quality    on {metrics.get('images')} images ({metrics.get('data')}, "
                f"{'greedy' if beam == 1 else f'beam {beam}'}): exact match {b.get('exact_match')}, "
                f"BLEU-4 {b.get('bleu4')}, CIDEr-D {b.get('cider')}")
        lines.append(line)
    if metrics.get("agreement"):
        a = metrics["agreement"]
        lines.append(f"parity     identical captions to the float model: {a.get('exact_caption')}, "
                     f"tokens {a.get('token')}")
    tpu = info["edgetpu"] or {}
    if not tpu:
        lines.append("edge tpu   not compiled for the Edge TPU (velm-convert export --edgetpu)")
    for name, r in tpu.items():
        lines.append(f"edge tpu   {name}: {compiled_summary(r)}")
    return "\n".join(lines)


def compiled_summary(entry: dict) -> str:
    """One line on a graph's edgetpu_compiler result in the manifest: its file and how many ops it mapped."""
    if not entry.get("file"):
        return f"compilation failed (exit code {entry.get('returncode')}); see the manifest's log"
    ops = entry.get("ops") or []
    mapped = sum(o["count"] for o in ops if o["status"] == "Mapped to Edge TPU")
    return f"{entry['file']}, {mapped} of {sum(o['count'] for o in ops)} ops on the Edge TPU"
