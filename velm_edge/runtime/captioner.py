"""Bundle -> captions: preprocess, vision graph, decode loop over the language graph, detokenize.

    with Captioner.open() as cap:               # the shipped photo bundle, or open("shapes"), open("NAME.velm")
        print(cap.caption(frame).text)          # frame: BGR uint8 from OpenCV (or see preprocess)

Works on int8, float32 and dynamic-range bundles alike.  Everything stays in the graphs' own
domains: the image is quantized once, the embedding table is stored in the embedding input's domain
(a lookup is an index), the state is copied from output to input (requantized only if the two differ)
and greedy decoding takes the argmax of the int8 logits.

Interpreters are not thread-safe, so each thread that captions gets its own pair (built on first use
from the bundle bytes already in memory); one Captioner can be shared by several threads.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from velm_edge.errors import BundleError
from velm_edge.runtime import batching, confidence, decode, preprocess
from velm_edge.runtime.bundle import Bundle, resolve
from velm_edge.runtime.choices import RESIZE_MODES, check
from velm_edge.runtime.contract import check_graphs
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.detect import MAX_DETECTIONS, Detection, DetectOptions, Detector, as_tags
from velm_edge.runtime.graph import Graph
from velm_edge.runtime.grounding import DetectedWords, Tag, no_grounding
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.runtime.quant import Dequantizer, dequantize, quantize, requantizer


@dataclass(frozen=True)
class Caption:
    text: str
    tokens: tuple[int, ...]  # generated ids without <start>/<end>
    score: float  # sum of token log-probabilities
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, vision, decode, total, ...
    complete: bool = True  # False when the length limit or time budget cut the caption short
    tags: tuple[Tag, ...] = ()  # the ImageNet classifier's top classes (grounded bundles; empty otherwise)
    confidence: float = 1.0  # 0..1: how sure the model is of this caption (see velm_edge.runtime.confidence)
    detections: tuple[Detection, ...] = ()  # the detector's objects, best first (bundles with a detector)

    def to_json(self) -> dict:
        return {"text": self.text, "tokens": list(self.tokens), "score": round(self.score, 4),
                "confidence": round(self.confidence, 3), "tags": [t.to_json() for t in self.tags],
                "detections": [d.to_json() for d in self.detections], "complete": self.complete,
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


@dataclass(frozen=True)
class Encoded:
    """A frame after preprocessing and the vision graph: what the decode loop starts from."""
    feature: np.ndarray  # (1, F) in the language graph's feature-input domain
    state: np.ndarray  # (1, S) initial state, in its state-input domain
    timings_ms: dict[str, float]  # preprocess, vision
    classes: np.ndarray | None = None  # (C,) ImageNet class probabilities (grounded bundles)
    signal: float = 1.0  # 0..1: how much picture the frame holds (velm_edge.runtime.confidence.image_signal)
    tag_start: tuple[np.ndarray, np.ndarray] | None = None  # (feature, state) from the tags alone (tagged decoders)
    detections: tuple[Detection, ...] | None = None  # the detector's objects; None where it did not run
    seen: tuple[Detection, ...] | None = None  # what grounding uses: every label at the bundle's threshold


GROUNDING = DetectOptions(max_detections=MAX_DETECTIONS)  # the detections captions are grounded in


class _Graphs:
    """One thread's interpreters and the constant parts of the decode loop."""

    def __init__(self, bundle: Bundle, runtime: RuntimeOptions):
        self.vision = Graph(bundle.vision, f"{bundle.root}/vision.tflite", runtime.for_vision(),
                            bundle.edgetpu.get("vision"))
        self.language = Graph(bundle.language, f"{bundle.root}/language.tflite", runtime.for_language(),
                              bundle.edgetpu.get("language"))
        self.detector = None
        graphs = {"vision": self.vision, "language": self.language}
        if bundle.detector is not None:
            graphs["detector"] = Graph(bundle.detector, f"{bundle.root}/detector.tflite", runtime.for_vision(),
                                       bundle.edgetpu.get("detector"))
        check_graphs(bundle, graphs)
        if bundle.detector is not None:
            self.detector = Detector(graphs["detector"], bundle.decoding)
        self.bundle, self.runtime = bundle, runtime
        self._rows: Graph | None = None  # the language graph for several rows (``rows_graph``)
        self._rows_refused = not runtime.batch_beams or bool(self.language.info.get("compiled"))
        v, lang = self.vision, self.language
        self.q_image = v.qparams("image")
        self.feature_in = requantizer(v.qparams("feature", True), lang.qparams("feature"))
        self.state0_in = requantizer(v.qparams("state", True), lang.qparams("state"))
        self.state_in = requantizer(lang.qparams("state", True), lang.qparams("state"))
        self.logits_to_real = Dequantizer(lang.qparams("logits", True))  # int8 logits: also their byte table
        self.q_classes = v.qparams("classes", True) if "classes" in v.outputs else None
        self.q_detected = v.qparams("detected") if "detected" in v.inputs else None  # a decoder trained on them
        self.tag_start_in = None
        if "tag_feature" in v.outputs:
            self.tag_start_in = (requantizer(v.qparams("tag_feature", True), lang.qparams("feature")),
                                 requantizer(v.qparams("tag_state", True), lang.qparams("state")))

    def rows_graph(self, rows: int) -> Graph | None:
        """The language graph taking ``rows`` rows (or more) in one invoke, built on first need for this thread;
        None where beams run row by row: ``batch_beams`` off, a compiled Edge TPU graph (static shapes), a graph
        whose batch ``batching.rows_free`` cannot free or ``batching.same_rows`` finds unsound, or a batch that
        is not faster here (``batching.pays``)."""
        if self._rows is not None and self._rows.rows >= rows:
            return self._rows
        if self._rows_refused:
            return None
        freed, graph = batching.rows_free(self.bundle.language), None
        if freed is not None:
            label = f"{self.bundle.root}/language.tflite ({rows} rows)"
            try:
                graph = Graph(freed, label, self.runtime.for_language())
                graph.resize_rows(rows)
                single = Graph(self.bundle.language, label, self.runtime.for_language())  # its inputs are its own
                if not batching.same_rows(single, graph, rows) or not batching.pays(single, graph, rows):
                    graph = None
            except (BundleError, RuntimeError, ValueError):
                graph = None
        if graph is None:
            self._rows_refused = True
            return None
        graph.tally = self.language  # its invokes count as the language graph's (bench's figures)
        self._rows = graph
        return graph


class Captioner:
    def __init__(self, bundle: Bundle, runtime: RuntimeOptions | None = None, options: DecodeOptions | None = None,
                 rgb: bool = False, resize: str | None = None, detection: DetectOptions | None = None):
        self.bundle, self.vocab, self.rgb = bundle, bundle.vocab, rgb
        self.detection = detection if detection is not None else DetectOptions()
        self.runtime = runtime if runtime is not None else RuntimeOptions()
        self.options = options if options is not None else DecodeOptions.recommended(bundle.manifest)
        pre = bundle.manifest["preprocess"]
        self.size, self.input_scale = int(pre["size"]), float(pre["scale"])
        self.color_order = pre["color_order"]  # the order the bundle's graph expects
        self.resize_mode = check("resize mode", resize or pre["resize"], RESIZE_MODES)
        self.max_steps = int(bundle.manifest["max_length"]) - 1
        self.table = bundle.embeddings
        self.words = bundle.words  # the classifier's labels and caption words (None: not a grounded bundle)
        self.plain_bias = no_grounding(len(self.vocab), self.vocab.unk_id)  # <unk> is never said
        self.detected_words = DetectedWords(bundle.manifest["detector"], self.vocab, f"{bundle.root}/manifest.json") \
            if bundle.decoding is not None else None
        self._local = threading.local()
        self._closed = False
        self._graphs()  # build and check now, so a bad bundle fails at open(), not at the first frame

    @classmethod
    def open(cls, path: str | Path | None = None, runtime: RuntimeOptions | None = None,
             options: DecodeOptions | None = None, rgb: bool = False, resize: str | None = None,
             isolate: bool = False, source: object = None, detection: DetectOptions | None = None) -> Captioner:
        """Load and check a bundle directory, or a shipped one by name (default: "photo", the real-world
        model, or "shapes", which knows the synthetic scenes, when ``source`` is the synthetic camera: a
        ``synth:`` URI or source).

        ``runtime``: interpreter threads, backend (package) and device (``RuntimeOptions``);
        ``options``: decoding (greedy, beam, limits; default: what the bundle's manifest recommends);
        ``rgb``: frames are RGB(A) rather than BGR(A); ``resize``: override the bundle's resize mode;
        ``isolate``: for an untrusted bundle, first load and run it once in a child process with memory and
        time limits (``velm_edge.runtime.isolate``), so a bundle that crashes the interpreter is refused instead;
        ``detection``: whether the bundle's detector runs and which objects it keeps (``DetectOptions``)."""
        root, digest = resolve(path, source), None  # the one resolve of this open
        if isolate:
            from velm_edge.runtime.isolate import probe

            digest = probe(root, backend=(runtime or RuntimeOptions()).backend)["manifest_sha256"]
        return cls(Bundle.read(root, digest), runtime, options, rgb, resize, detection)

    def close(self) -> None:
        self._closed = True
        self._local = threading.local()

    def __enter__(self) -> Captioner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _graphs(self) -> _Graphs:
        if self._closed:
            raise RuntimeError("this Captioner is closed")
        g = getattr(self._local, "graphs", None)
        if g is None:
            g = self._local.graphs = _Graphs(self.bundle, self.runtime)
        return g

    @property
    def vision(self) -> Graph:
        """This thread's vision graph."""
        return self._graphs().vision

    @property
    def language(self) -> Graph:
        """This thread's language graph."""
        return self._graphs().language

    @property
    def detector_graph(self) -> Graph | None:
        """This thread's detector graph (None: the bundle has none)."""
        detector = self._graphs().detector
        return None if detector is None else detector.graph

    @property
    def takes_detections(self) -> bool:
        """Whether the bundle's decoder was trained on its detector's detections (its vision graph takes them)."""
        return self._graphs().q_detected is not None

    def batches(self, rows: int) -> bool:
        """Whether a beam search of ``rows`` beams runs them as one batch, one invoke a step, on this thread
        (``RuntimeOptions.batch_beams``; the graph must take it soundly and gain from it)."""
        return self._graphs().rows_graph(rows) is not None

    @property
    def info(self) -> dict:
        """Which interpreter package and device run the graphs (for this thread)."""
        return dict(self._graphs().vision.info)

    # -- stages
    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 (size, size, 3) -> (feature, state0), both in the language graph's input domain."""
        seen = self.see(rgb)
        return seen.feature, seen.state

    def see(self, rgb: np.ndarray, seen: tuple[Detection, ...] | None = None) -> Encoded:
        """``encode`` and, for a grounded bundle, the ImageNet class probabilities (C,), and for a decoder trained
        on tags its start from the tags alone (no timings, no image signal).  A vision graph that takes the
        detections is given ``seen`` (every label at the bundle's threshold; None: the detector runs on ``rgb``)."""
        g = self._graphs()
        g.vision.set("image", preprocess.to_input(rgb, g.q_image, self.input_scale))
        if g.q_detected is not None:
            if seen is None:
                seen = g.detector.detections(*g.detector.run(rgb, self.color_order == "RGB"), GROUNDING)
            g.vision.set("detected", quantize(as_tags(seen, self.bundle.decoding.labels)[None], g.q_detected))
        g.vision.invoke()
        classes = None if g.q_classes is None else dequantize(g.vision.get("classes")[0], g.q_classes)
        tag_start = None
        if g.tag_start_in is not None:
            tag_start = (g.tag_start_in[0](g.vision.get("tag_feature")), g.tag_start_in[1](g.vision.get("tag_state")))
        return Encoded(g.feature_in(g.vision.get("feature")), g.state0_in(g.vision.get("state")), {}, classes,
                       tag_start=tag_start)

    def step_fn(self, feature: np.ndarray) -> decode.Step:
        """A decode.Step for one image's feature (1, F).  Several rows (beams) run as one batch in one invoke
        where that is sound (``_Graphs.rows_graph``), else one by one; the results are the same.
        Logits come back in the graph's own domain (int8 for int8 bundles)."""
        g = self._graphs()
        lang, table, state_in = g.language, self.table, g.state_in
        lang.set("feature", feature)  # constant for the whole caption: written once
        fed: list[Graph] = []  # the rows graph, once this caption's feature is in it

        def rows_at_once(tokens: np.ndarray, states: np.ndarray):
            graph = g.rows_graph(len(tokens))
            if graph is None:
                return None
            if not fed or fed[0] is not graph:
                graph.set("feature", np.repeat(feature, graph.rows, axis=0))
                fed[:] = [graph]
            n, pad = len(tokens), graph.rows - len(tokens)
            if pad:  # fewer live beams than rows: the last one again (rows are independent), then dropped
                tokens = np.concatenate([tokens, np.repeat(tokens[-1:], pad)])
                states = np.concatenate([states, np.repeat(states[-1:], pad, axis=0)])
            graph.set("embedding", table[tokens.astype(np.int64)])
            graph.set("state", states)
            graph.invoke()
            return graph.get("logits")[:n], state_in(graph.get("state")[:n])

        set_tensor, get_tensor = lang.interpreter.set_tensor, lang.interpreter.get_tensor  # the hot path, by index
        i_emb, i_state, o_logits, o_state = lang.index("embedding"), lang.index("state"), \
            lang.index("logits", True), lang.index("state", True)

        def row(t: int, state: np.ndarray):
            set_tensor(i_emb, table[t:t + 1])
            set_tensor(i_state, state)
            lang.invoke()
            return get_tensor(o_logits), state_in(get_tensor(o_state))

        def step(tokens: np.ndarray, states: np.ndarray):
            if len(tokens) == 1:  # greedy, and beams of one: nothing to gather
                return row(int(tokens[0]), states)
            together = rows_at_once(tokens, states)
            if together is not None:
                return together
            rows = [row(int(t), states[i:i + 1]) for i, t in enumerate(tokens)]
            return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])

        return step

    def decode_features(self, feature: np.ndarray, state: np.ndarray, options: DecodeOptions | None = None,
                        classes: np.ndarray | None = None,
                        tag_start: tuple[np.ndarray, np.ndarray] | None = None,
                        detections: tuple[Detection, ...] | None = None) -> decode.Decoded:
        """The decode loop from (feature, state); ``classes`` (a grounded bundle's class probabilities) and
        ``detections`` (its detector's objects; None where it did not run) steer it when ``options.ground`` is on
        (see ``velm_edge.runtime.grounding``): a caption that names none of the classifier's confident words nor
        the objects found, or not the object the detector is surest of, or names a person the detector does not
        see, is decoded a second time, with them raised and without people, by a beam of at most 2, and from
        ``tag_start`` (the start from the tags alone, of a decoder trained on tags) when there is one."""
        g = self._graphs()
        v, options = self.vocab, options or self.options
        bias, boost = self.plain_bias, None
        if classes is not None and self.words is not None and options.ground > 0:
            bias, boost = self.words.bias(classes, options.ground)
        banned = surest = np.zeros(0, np.int64)
        if self.detected_words is not None and options.ground > 0 and detections is not None:
            banned, boost, surest = self.detected_words.apply(detections, boost)

        def run(bias, boost, options, start=(feature, state)):
            return decode.decode(self.step_fn(start[0]), start[1], v.start_id, v.end_id, self.max_steps, options,
                                 g.logits_to_real, bias, boost)

        t0 = time.perf_counter()
        d = run(bias, None, options)  # the decoder's own caption, <unk> and the classifier's unseen words held back
        said = list(d.tokens)
        misses = boost is not None and not boost[said].any()  # it names no confident word and no object found,
        misses |= surest.size > 0 and not np.isin(surest, said).any()  # or not the object the detector is surest of
        invents = bool(np.isin(banned, said).any())  # it names a person the detector does not see
        if misses or invents:  # again, raised and without the banned words,
            second = options.override(beam_size=min(2, options.beam_size))  # a narrower beam: two thirds of the cost
            if options.time_budget_ms is not None:  # the budget is the whole caption's: only what is left of it
                left = options.time_budget_ms - (time.perf_counter() - t0) * 1e3
                if left <= 0:
                    return d
                second = dataclasses.replace(second, time_budget_ms=left)
            if banned.size:
                bias = bias.copy()
                bias[banned] = -np.inf
            again = run(bias, boost, second, tag_start or (feature, state))
            d = again if again.complete or not d.complete else d  # never trade a finished caption for a cut one
        return d

    def _result(self, d: decode.Decoded, classes: np.ndarray | None, signal: float,
                timings: dict[str, float], detections: tuple[Detection, ...]) -> Caption:
        tags, support = (), 0.0
        if classes is not None and self.words is not None:
            tags = self.words.tags(classes)
            support = float(self.words.word_scores(classes)[list(d.tokens)].max(initial=0.0))
        return Caption(self.vocab.decode(d.tokens), d.tokens, d.score, timings, d.complete, tags,
                       confidence.of_caption(d.score, len(d.tokens), signal, support), detections)

    def encode_frame(self, frame: np.ndarray, detection: DetectOptions | None = None,
                     earlier: Encoded | None = None) -> Encoded:
        """The first half of ``caption``: preprocess, the detector where the bundle has one and ``detection``
        (default: the Captioner's) lets it, and the vision graph (``decode_encoded`` is the rest).  A bundle whose
        decoder was trained on the detections runs its detector whatever ``detection`` says (``detect`` off
        then only leaves them out of the answer).  ``earlier``: an earlier frame's result whose detections are
        kept instead of running the detector again (live's ``--detect-every``).
        Two threads can run the halves of consecutive frames at once: each thread has its own graphs."""
        detection, g = detection or self.detection, self._graphs()
        timings, detections, seen = {}, None, None
        if earlier is not None:
            detections, seen = earlier.detections, earlier.seen
        elif g.detector is not None and (detection.detect or g.q_detected is not None):
            t0 = time.perf_counter()
            scores, boxes, where = g.detector.run(frame, self.rgb)
            seen = g.detector.detections(scores, boxes, where, GROUNDING)
            if detection.detect:  # grounding sees every label at the bundle's threshold, whatever the caller keeps
                # ("only cars" must not make a caption drop the people)
                detections = seen[:detection.max_detections] if detection.classes == () and \
                    detection.min_score is None else g.detector.detections(scores, boxes, where, detection)
            timings["detect"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        image = preprocess.prepare(frame, self.size, self.resize_mode, self.rgb, self.color_order)
        timings["preprocess"] = (time.perf_counter() - t0) * 1e3
        encoded = self.encode_rgb(image, () if seen is None and g.q_detected is not None else seen)
        return dataclasses.replace(encoded, timings_ms={**timings, **encoded.timings_ms}, detections=detections,
                                   seen=seen)

    def detect(self, frame: np.ndarray, detection: DetectOptions | None = None) -> tuple[Detection, ...]:
        """The bundle's detector alone: any accepted frame -> its objects, best first, boxes in the frame's pixels
        (``detection``: which ones; default: the Captioner's).  A bundle without a detector refuses."""
        detector = self._graphs().detector
        if detector is None:
            raise BundleError(f"{self.bundle.root}: this bundle has no detector graph (detector.tflite); the "
                              f"shipped photo bundle has one")
        scores, boxes, where = detector.run(frame, self.rgb)
        return detector.detections(scores, boxes, where, detection or self.detection)

    def encode_rgb(self, rgb: np.ndarray, seen: tuple[Detection, ...] | None = None) -> Encoded:
        """``encode_frame`` for a uint8 image already at the model's size and in its colour order (no preprocess;
        ``seen``: see ``see``)."""
        t0 = time.perf_counter()
        seen = self.see(rgb, seen)
        return dataclasses.replace(seen, timings_ms={"vision": (time.perf_counter() - t0) * 1e3},
                                   signal=confidence.image_signal(rgb))

    def decode_encoded(self, encoded: Encoded, options: DecodeOptions | None = None) -> Caption:
        """The second half of ``caption``: the decode loop over an ``encode_frame`` result."""
        t0 = time.perf_counter()
        d = self.decode_features(encoded.feature, encoded.state, options, encoded.classes, encoded.tag_start,
                                 encoded.seen)
        timings = {**encoded.timings_ms, "decode": (time.perf_counter() - t0) * 1e3}
        timings["total"] = sum(timings.values())
        return self._result(d, encoded.classes, encoded.signal, timings, encoded.detections or ())

    def caption_rgb(self, rgb: np.ndarray, options: DecodeOptions | None = None) -> Caption:
        """A uint8 image already at the model's size and in its colour order (RGB unless the bundle's
        preprocess.color_order says BGR) -> Caption (timings: vision, decode, total)."""
        return self.decode_encoded(self.encode_rgb(rgb), options)

    def caption(self, frame: np.ndarray, options: DecodeOptions | None = None, beam_size: int | None = None,
                detection: DetectOptions | None = None) -> Caption:
        """A frame of any size and accepted dtype (see preprocess) -> Caption.

        ``options`` overrides the Captioner's decode options for this call; ``beam_size`` is a shortcut
        (1 = greedy, more = beam search of that width); ``detection`` overrides its detection options."""
        if beam_size is not None:
            options = (options or self.options).override(beam_size=beam_size)
        return self.decode_encoded(self.encode_frame(frame, detection), options)
