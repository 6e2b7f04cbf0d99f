"""Bundle -> captions: preprocess, vision graph, decode loop over the language graph, detokenize.

    with Captioner.open("models/default.velm") as cap:
        print(cap.caption(frame).text)          # frame: BGR uint8 from OpenCV

Works on int8, float32 and dynamic-range bundles alike.  The decoder state stays in the language
graph's input domain between steps (requantized only when the graph's output parameters differ), and
the embedding table is already stored in the embedding input's domain, so a lookup is an index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from velm_edge import decode, preprocess
from velm_edge.bundle import Bundle, BundleError
from velm_edge.graph import Graph
from velm_edge.quant import dequantize, quantize, requantize


@dataclass(frozen=True)
class Caption:
    text: str
    tokens: tuple[int, ...]  # generated ids without <start>/<end>
    score: float  # sum of token log-probabilities
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, vision, decode, total

    def to_json(self) -> dict:
        return {"text": self.text, "tokens": list(self.tokens), "score": round(self.score, 4),
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


class Captioner:
    def __init__(self, bundle: Bundle, num_threads: int | None = None, backend: str = "auto"):
        self.bundle, self.vocab = bundle, bundle.vocab
        m = bundle.manifest
        self.vision = Graph(bundle.vision, f"{bundle.root}/vision.tflite", num_threads, backend)
        self.language = Graph(bundle.language, f"{bundle.root}/language.tflite", num_threads, backend)
        pre = m["preprocess"]
        self.size, self.resize_mode, self.input_scale = int(pre["size"]), pre["resize"], float(pre["scale"])
        self.max_steps = int(m["max_length"]) - 1
        self.table = bundle.embeddings
        v, lang = self.vision, self.language
        self._q_image = v.qparams("image")
        self._q_feat = (v.qparams("feature", True), lang.qparams("feature"))
        self._q_state0 = (v.qparams("state", True), lang.qparams("state"))
        self._q_state = (lang.qparams("state", True), lang.qparams("state"))
        self._q_logits = lang.qparams("logits", True)
        q_emb = lang.qparams("embedding")
        if bundle.embedding_qparams != q_emb or self.table.dtype != np.dtype(q_emb.dtype):
            raise BundleError(f"{bundle.root}/embeddings.npy: stored as {self.table.dtype} with "
                              f"{bundle.embedding_qparams}, but language.tflite's embedding input is {q_emb}; "
                              f"re-export the bundle")

    @classmethod
    def open(cls, path: str | Path, num_threads: int | None = None, backend: str = "auto") -> Captioner:
        return cls(Bundle.load(path), num_threads, backend)

    def close(self) -> None:
        self.vision = self.language = None

    def __enter__(self) -> Captioner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- stages
    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 (size, size, 3) -> (feature, state0), both in the language graph's input domain."""
        image = quantize(rgb[None].astype(np.float32) * self.input_scale, self._q_image)
        out = self.vision.run(image=image)
        return requantize(out["feature"], *self._q_feat), requantize(out["state"], *self._q_state0)

    def step_fn(self, feature: np.ndarray) -> decode.Step:
        """A decode.Step for one image's feature (1, F); rows of a batch (beams) run one by one."""

        def step(tokens: np.ndarray, states: np.ndarray):
            logits, new_states = [], []
            for tok, state in zip(tokens, states):
                out = self.language.run(embedding=self.table[tok][None], feature=feature, state=state[None])
                logits.append(out["logits"][0])
                new_states.append(requantize(out["state"], *self._q_state)[0])
            return dequantize(np.stack(logits), self._q_logits), np.stack(new_states)

        return step

    def caption_rgb(self, rgb: np.ndarray, beam_size: int = 1) -> Caption:
        t0 = time.perf_counter()
        feature, state = self.encode(rgb)
        t1 = time.perf_counter()
        v = self.vocab
        if beam_size <= 1:
            d = decode.greedy(self.step_fn(feature), state, v.start_id, v.end_id, self.max_steps)[0]
        else:
            d = decode.beam_search(self.step_fn(feature), state, v.start_id, v.end_id, self.max_steps, beam_size)
        t2 = time.perf_counter()
        return Caption(v.decode(d.tokens), d.tokens, d.score, {"vision": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3})

    def caption(self, frame: np.ndarray, beam_size: int = 1) -> Caption:
        """A BGR (or gray / BGRA) uint8 frame of any size -> Caption."""
        t0 = time.perf_counter()
        rgb = preprocess.prepare(frame, self.size, self.resize_mode)
        t1 = time.perf_counter()
        c = self.caption_rgb(rgb, beam_size)
        timings = {"preprocess": (t1 - t0) * 1e3, **c.timings_ms}
        timings["total"] = sum(timings.values())
        return Caption(c.text, c.tokens, c.score, timings)
