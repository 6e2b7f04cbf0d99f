"""Live captions: source -> latest-frame reader -> Captioner -> sinks, plus the API for your own programs.

    from velm_edge.pipeline import live_captions
    for event in live_captions("synth:", max_frames=50):      # or "0", "/dev/video0", "rtsp://...", ...
        print(event["text"], event["frame_age_ms"])

Each event is a dict: ``text``, ``tokens``, ``score``, ``complete``, ``frame`` (the source's frame
number), ``captured`` (wall-clock time of capture, seconds since the epoch), ``frame_age_ms``
(capture to caption), ``latency_ms`` (preprocess + graphs + decoding), ``dropped`` (frames the
reader replaced before they were captioned, so far), ``bad_frames`` (malformed frames skipped),
``reconnects``, and for synthetic frames ``truth`` and ``correct``.  The captioner runs in the
caller's thread and the reader in its own; with ``overlap=True`` (``velm-edge run``'s default on the CPU)
the next frame's vision graph runs on a third (``vision_ahead``).

Frames from your own loop, captions through a callback::

    with PushCaptioner(lambda event: print(event["text"])) as cap:
        while running:
            cap.push(frame)          # never blocks: the newest frame wins, older ones are dropped
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from velm_edge.bundle import DEFAULT_BUNDLE, resolve
from velm_edge.captioner import Captioner
from velm_edge.reader import LatestFrameReader
from velm_edge.sinks import Sink
from velm_edge.sources import PushSource, Source, open_source
from velm_edge.stabilize import SceneGate, Stabilizer
from velm_edge.tokenizer import normalize
from velm_edge.vision_ahead import END, VisionAhead


def _event(frame, caption, wall_offset: float, **counters: int) -> dict:
    now = time.monotonic()
    event = {"text": caption.text, "tokens": list(caption.tokens), "score": round(caption.score, 4),
             "complete": caption.complete, "frame": frame.index,
             "captured": round(frame.captured + wall_offset, 4),
             "frame_age_ms": round((now - frame.captured) * 1e3, 2),
             "latency_ms": round(caption.timings_ms.get("total", 0.0), 3), **counters}
    if frame.name is not None:
        event["image"] = frame.name
    if frame.truth is not None:
        event["truth"] = frame.truth
        event["correct"] = normalize(caption.text) == normalize(frame.truth)
    return event


def _sequential(reader: LatestFrameReader, captioner: Captioner, gate: SceneGate | None,
                on_progress: Callable[[], None] | None, counts: dict) -> Iterator[tuple | None]:
    """(frame, caption) for the newest frames, one after the other; None while there is nothing new."""
    while True:
        frame = reader.get(timeout=0.2)
        if frame is None:
            if reader.ended:
                return
            yield None
            continue
        if on_progress is not None:
            on_progress()
        try:
            if gate is not None and not gate.changed(frame.image, frame.captured):
                yield None
                continue
            caption = captioner.caption(frame.image)
        except ValueError:  # an undecodable or malformed frame: counted, never fatal
            counts["bad"] += 1
            yield None
            continue
        yield frame, caption


def _overlapped(reader: LatestFrameReader, captioner: Captioner, gate: SceneGate | None,
                on_progress: Callable[[], None] | None, counts: dict) -> Iterator[tuple | None]:
    """The same pairs, with the next frame's vision graph running on its own thread meanwhile."""
    ahead = VisionAhead(reader, captioner, gate, on_progress).start()
    try:
        while True:
            item = ahead.get(timeout=0.2)
            counts["bad"] = ahead.bad
            if item is END:
                return
            if item is None:
                yield None
                continue
            frame, encoded = item
            yield frame, captioner.decode_encoded(encoded)
    finally:
        ahead.stop()


def captions(source: Source, captioner: Captioner, max_frames: int | None = None,
             duration_s: float | None = None, stop: Callable[[], bool] | None = None,
             gate: SceneGate | None = None, stabilizer: Stabilizer | None = None,
             reader: LatestFrameReader | None = None,
             on_progress: Callable[[], None] | None = None, overlap: bool = False) -> Iterator[dict]:
    """Caption the newest frame of ``source`` again and again until it ends or a limit is reached.

    ``gate``: skip frames that did not change (``skipped`` counts them).  ``stabilizer``: yield only
    when the announced caption changes (``max_frames`` still counts every caption made).  ``reader``:
    a configured LatestFrameReader for ``source`` (stall limit, backoff), started here.  ``on_progress``:
    called for every frame taken and processed (captioned, skipped as unchanged or refused as malformed),
    e.g. ``systemd.Notifier.progress`` to feed a watchdog with real progress.  ``overlap``: run the next
    frame's preprocessing and vision graph on a second thread while this one decodes (``vision_ahead``):
    more captions per second on two or more cores, each caption's frame older by up to one decode."""
    reader = (reader or LatestFrameReader(source)).start()
    wall_offset = time.time() - time.monotonic()
    start, done, counts = time.monotonic(), 0, {"bad": 0}
    pairs = (_overlapped if overlap else _sequential)(reader, captioner, gate, on_progress, counts)
    try:
        while (max_frames is None or done < max_frames) and not (stop and stop()):
            if duration_s is not None and time.monotonic() - start >= duration_s:
                break
            pair = next(pairs, END)
            if pair is END:
                if reader.error is not None:
                    raise reader.error
                break
            if pair is None:
                continue
            frame, caption = pair
            done += 1
            if stabilizer is not None and not stabilizer.update(caption.text):
                continue
            skipped = {} if gate is None else {"skipped": gate.skipped}
            yield _event(frame, caption, wall_offset, dropped=reader.dropped, reconnects=reader.reconnects,
                         bad_frames=counts["bad"] + reader.bad_frames, **skipped)
    finally:
        pairs.close()
        reader.stop()


def live_captions(source: str | Source = "synth:", bundle: str | Path | None = None, **kw) -> Iterator[dict]:
    """``captions`` with a source named by a string and a bundle path or shipped name (default: the shapes
    bundle for synth:, the photo bundle for everything else)."""
    src = open_source(source) if isinstance(source, str) else source
    with Captioner.open(resolve(bundle, source)) as cap:
        yield from captions(src, cap, **kw)


def run(source: Source, captioner: Captioner, sinks: list[Sink], **kw) -> dict:
    """Send every caption to every sink, and every frame to sinks that show a preview (a ``frame`` method);
    returns counts.  Sinks are stopped (flushed) however it ends."""
    started = []
    count = correct = with_truth = 0
    try:
        for s in sinks:
            started.append(s.start())
        previews = [s.frame for s in started if hasattr(s, "frame")]
        user_stop = kw.pop("stop", None)  # a sink may end the run too (the window's q key)
        kw["stop"] = lambda: bool(user_stop and user_stop()) or any(getattr(s, "stopped", False) for s in started)
        if previews:
            kw["reader"] = kw.get("reader") or LatestFrameReader(source)
            kw["reader"].on_frame = lambda f: [show(f.image) for show in previews]
        for event in captions(source, captioner, **kw):
            count += 1
            if "correct" in event:
                with_truth += 1
                correct += event["correct"]
            for sink in started:
                sink.write(event)
    finally:
        for sink in started:
            sink.stop()
    return {"captions": count, "with_truth": with_truth, "correct": correct}


class PushCaptioner:
    """Push frames, receive caption events through ``on_caption`` (called on a worker thread)."""

    def __init__(self, on_caption: Callable[[dict], None], bundle: str | Path = DEFAULT_BUNDLE, **captioner_kw):
        import threading

        self.source, self.on_caption = PushSource(), on_caption
        self.captioner = Captioner.open(bundle, **captioner_kw)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="push captioner", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for event in captions(self.source, self.captioner, stop=self._stop.is_set):
                self.on_caption(event)
        except BaseException as e:  # kept for the caller: close() re-raises it
            self.error = e

    def push(self, frame) -> None:
        self.source.push(frame)

    def close(self) -> None:
        self._stop.set()
        self.source.close()
        self._thread.join(5)
        self.captioner.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> PushCaptioner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
