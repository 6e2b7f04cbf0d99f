"""Live captions: source -> latest-frame reader -> Captioner -> CaptionEvents -> sinks.

    from velm_edge import live_captions, LiveOptions
    for event in live_captions("synth:", live=LiveOptions(max_frames=50)):   # or "0", "rtsp://...", ...
        print(event.text, event.frame_age_ms)

Each caption is a ``CaptionEvent`` (live/events.py says what every field means).  The captioner
runs in the caller's thread and the reader in its own; with ``LiveOptions(overlap=True)``
(``velm-edge run``'s default on the CPU) the next frame's vision graph runs on a third
(``vision_ahead``).  Frames from your own loop go through ``PushCaptioner`` (live/push.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from velm_edge.live.events import CaptionEvent, Stabilizer
from velm_edge.live.options import LiveOptions
from velm_edge.live.reader import LatestFrameReader
from velm_edge.live.scene_gate import SceneGate
from velm_edge.live.sources import Frame, Source, open_source
from velm_edge.live.vision_ahead import END, VisionAhead, encoded_frames
from velm_edge.runtime.captioner import Caption, Captioner
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.runtime.tokenizer import normalize

if TYPE_CHECKING:  # sinks depend on the live room, never the other way round
    from velm_edge.sinks.base import Sink


def _event(frame: Frame, caption: Caption, wall_offset: float, **counters: int) -> CaptionEvent:
    truth = frame.truth
    return CaptionEvent.of(caption, frame.index, round(frame.captured + wall_offset, 4),
                           round((time.monotonic() - frame.captured) * 1e3, 2), image=frame.name, truth=truth,
                           correct=None if truth is None else normalize(caption.text) == normalize(truth), **counters)


def _sequential(reader: LatestFrameReader, captioner: Captioner, gate: SceneGate | None,
                on_progress: Callable[[], None] | None, counts: dict, detect_every: int) -> Iterator[tuple | None]:
    """(frame, caption) for the newest frames, one after the other; None while there is nothing new."""
    for item in encoded_frames(reader, captioner, gate, on_progress, counts, detect_every):
        yield None if item is None else (item[0], captioner.decode_encoded(item[1]))


def _overlapped(reader: LatestFrameReader, captioner: Captioner, gate: SceneGate | None,
                on_progress: Callable[[], None] | None, counts: dict, detect_every: int) -> Iterator[tuple | None]:
    """The same pairs, with the next frame's vision graph (and detector) running on its own thread meanwhile."""
    ahead = VisionAhead(reader, captioner, gate, on_progress, counts, detect_every).start()
    try:
        while True:
            item = ahead.get(timeout=0.2)
            if item is END:
                return
            if item is None:
                yield None
                continue
            frame, encoded = item
            yield frame, captioner.decode_encoded(encoded)
    finally:
        ahead.stop()


def captions(source: Source, captioner: Captioner, options: LiveOptions | None = None, *,
             stop: Callable[[], bool] | None = None, reader: LatestFrameReader | None = None,
             on_progress: Callable[[], None] | None = None) -> Iterator[CaptionEvent]:
    """Caption the newest frame of ``source`` again and again until it ends or a limit of ``options`` is reached.

    ``options`` (``LiveOptions``): limits, the scene gate (``skipped`` counts frames it skipped), the
    confidence floor (a caption under ``min_confidence`` makes no event), the stabilizer (an event only when
    the announced caption changes; ``max_frames`` still counts every caption made) and overlap.  ``stop``:
    ends the run when it returns True.  ``reader``: a configured LatestFrameReader for ``source`` (stall
    limit, backoff), started here.  ``on_progress``: called for
    every frame taken and processed (captioned, skipped as unchanged or refused as malformed), e.g.
    ``systemd.Notifier.progress`` to feed a watchdog with real progress."""
    o = options or LiveOptions()
    gate = SceneGate(o.gate, o.gate_interval_s) if o.gate else None
    stabilizer = Stabilizer(o.stable) if o.stable else None
    reader = (reader or LatestFrameReader(source)).start()
    wall_offset = time.time() - time.monotonic()
    start, done, counts = time.monotonic(), 0, {"bad": 0}
    pairs = (_overlapped if o.overlap else _sequential)(reader, captioner, gate, on_progress, counts, o.detect_every)
    try:
        while (o.max_frames is None or done < o.max_frames) and not (stop and stop()):
            if o.duration_s is not None and time.monotonic() - start >= o.duration_s:
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
            if caption.confidence < o.min_confidence:  # nothing recognisable: no event
                continue
            if stabilizer is not None and not stabilizer.update(caption.text):
                continue
            skipped = {} if gate is None else {"skipped": gate.skipped}
            yield _event(frame, caption, wall_offset, dropped=reader.dropped, reconnects=reader.reconnects,
                         bad_frames=counts["bad"] + reader.bad_frames, **skipped)
    finally:
        pairs.close()
        reader.stop()


def live_captions(source: str | Source = "synth:", bundle: str | Path | None = None,
                  runtime: RuntimeOptions | None = None, live: LiveOptions | None = None) -> Iterator[CaptionEvent]:
    """``captions`` with a source named by a string and a bundle path or shipped name (default: the shapes
    bundle for synth:, the photo bundle for everything else)."""
    src = open_source(source) if isinstance(source, str) else source
    with Captioner.open(bundle, runtime, source=source) as cap:
        yield from captions(src, cap, live)


def run(source: Source, captioner: Captioner, sinks: list[Sink], options: LiveOptions | None = None, *,
        stop: Callable[[], bool] | None = None, reader: LatestFrameReader | None = None,
        on_progress: Callable[[], None] | None = None) -> dict:
    """Send every caption to every sink, and every frame to the sinks that want frames; returns counts.

    Every sink is started, and stopped (flushed) however the run ends: when one sink's ``stop`` raises,
    the others are still stopped, and the error is raised once all of them are."""
    count = correct = with_truth = 0
    with ExitStack() as stack:
        started = [stack.enter_context(s) for s in sinks]
        previews = [s for s in started if s.wants_frames]
        if previews:
            reader = reader or LatestFrameReader(source)
            reader.on_frame = lambda f: [s.frame(f.image) for s in previews]

        def stopping() -> bool:  # the caller, or a sink (the window's q key), may end the run
            return bool(stop and stop()) or any(s.stopped for s in started)

        for event in captions(source, captioner, options, stop=stopping, reader=reader, on_progress=on_progress):
            count += 1
            if event.correct is not None:
                with_truth += 1
                correct += event.correct
            for sink in started:
                sink.write(event)
    return {"captions": count, "with_truth": with_truth, "correct": correct}
