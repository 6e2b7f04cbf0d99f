"""``LiveOptions``: how long a live run lasts and which frames and captions it keeps.

``live_captions``, ``captions``, ``pipeline.run`` and ``PushCaptioner`` take one; ``velm-edge run``
builds its flags (and their help) from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from velm_edge.errors import OptionError


@dataclass(frozen=True)
class LiveOptions:
    max_frames: int | None = field(default=None, metadata={"help": "stop after this many captions"})
    duration_s: float | None = field(default=None, metadata={"help": "stop after this many seconds",
                                                             "flag": "duration"})
    gate: float = field(default=0.0, metadata={
        "help": "skip frames whose 32x32 grey thumbnail changed by at most this much (mean absolute difference, "
                "0-255) since the last caption; 0 = caption every frame it can (try 3-6)"})
    gate_interval_s: float = field(default=2.0, metadata={
        "help": "with --gate: caption at least this often (seconds) even if nothing changed",
        "flag": "gate_interval"})
    stable: int = field(default=0, metadata={
        "help": "announce a caption only after N identical results in a row (hysteresis against flicker); "
                "0 = announce every caption"})
    min_confidence: float = field(default=0.0, metadata={
        "help": "announce no caption whose confidence (0-1: the model's own probability of it, and whether the "
                "frame holds a picture at all) is below this; 0 = announce every caption. Try 0.5: dark, flat and "
                "noise frames score near 0, nearly all photographs 0.6 and up"})
    overlap: bool = field(default=False, metadata={
        "help": "run the next frame's vision graph on a second thread while the current caption decodes: more "
                "captions/s when the camera is faster than the captioner, on 2+ cores (velm-edge run: on with "
                "--device cpu, off with an Edge TPU)"})
    detect_every: int = field(default=1, metadata={
        "help": "run the bundle's detector on every N-th captioned frame only; the frames between keep its last "
                "objects (for a slow device: a Pi 4 projects a detector pass at several times a caption's vision "
                "graph)"})

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 0:
            raise OptionError(f"max_frames must be >= 0 (or None), got {self.max_frames}")
        if self.duration_s is not None and self.duration_s < 0:
            raise OptionError(f"duration_s must be >= 0 (or None), got {self.duration_s}")
        if not 0 <= self.min_confidence <= 1:
            raise OptionError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if isinstance(self.detect_every, bool) or not isinstance(self.detect_every, int) or self.detect_every < 1:
            raise OptionError(f"detect_every must be a whole number >= 1, got {self.detect_every!r}")
        if self.gate < 0 or self.gate_interval_s <= 0 or self.stable < 0:
            raise OptionError(f"gate must be >= 0, gate_interval_s > 0 and stable >= 0, got {self.gate}, "
                              f"{self.gate_interval_s}, {self.stable}")
