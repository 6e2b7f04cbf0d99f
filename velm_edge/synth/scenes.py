"""Procedural scenes with exactly one correct caption each (numpy + OpenCV only).

The device uses this module as a synthetic camera, the converter as an endless training set.

Layout: the image is a 3x3 grid of cells; every object sits in its own cell (jittered inside
it), which is what makes positions and relations unambiguous.  The caption grammar:

    one object          "a large red circle in the top left"
    n identical         "two small blue stars"
    two different       "a small red circle to the left of a large blue square"   (same row)
                        "a small red circle above a large blue square"            (same column)
    two + one           "two small red circles and a large blue square"
    three different     "a small red circle, a large blue square and a small green star"
                        (listed from left to right; the three sit in different columns)

Everything is deterministic for a given seed and config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from velm_edge.errors import OptionError

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
PLURALS = {"cross": "crosses"}  # everything else takes "s"
# Colour name -> BGR.  Saturated hues on desaturated backgrounds so lighting changes keep hue.
COLOURS = {
    "red": (40, 30, 220),
    "orange": (20, 140, 255),
    "yellow": (30, 230, 240),
    "green": (50, 190, 40),
    "cyan": (230, 220, 40),
    "blue": (220, 70, 30),
    "purple": (170, 30, 130),
    "pink": (190, 120, 255),
}
SIZES = ("small", "large")
COUNT_WORDS = {2: "two", 3: "three"}
POSITIONS = (
    ("in the top left", "at the top", "in the top right"),
    ("on the left", "in the center", "on the right"),
    ("in the bottom left", "at the bottom", "in the bottom right"),
)
GRID = 3
OBJECT_COUNT_WEIGHTS = (0.35, 0.40, 0.25)  # how often a scene has 1, 2, 3 objects


@dataclass(frozen=True)
class SceneConfig:
    """How hard the scenes are.  The defaults are "the default difficulty"."""

    size: int = 96  # output image side in pixels (square)
    shapes: tuple[str, ...] = SHAPES  # shape vocabulary (subset of SHAPES)
    colours: tuple[str, ...] = tuple(COLOURS)  # colour vocabulary (subset of COLOURS)
    max_objects: int = 3  # 1..3 objects per scene
    texture: float = 1.0  # 0 = flat background, 1 = full-strength textures
    noise: float = 6.0  # std-dev of additive Gaussian pixel noise (0..255 scale), upper bound
    lighting: float = 0.35  # max relative brightness change and gradient strength
    blur_prob: float = 0.3  # probability of a Gaussian blur
    jpeg_prob: float = 0.3  # probability of JPEG re-encoding (quality 35..90)

    def __post_init__(self) -> None:
        bad = [s for s in self.shapes if s not in SHAPES] + [c for c in self.colours if c not in COLOURS]
        if bad:
            raise OptionError(f"unknown shape/colour names {bad}; known: {SHAPES} and {tuple(COLOURS)}")
        if not 1 <= self.max_objects <= 3:
            raise OptionError(f"max_objects must be 1..3, got {self.max_objects}")
        if self.size < 32:
            raise OptionError(f"size must be at least 32 pixels, got {self.size}")
        if len(self.shapes) * len(self.colours) < 3:
            raise OptionError("need at least 3 distinct (shape, colour) combinations")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str  # "small" | "large"
    row: int  # grid cell, 0..2 from the top
    col: int  # grid cell, 0..2 from the left
    jitter: tuple[float, float] = (0.0, 0.0)  # offset inside the cell, in [-1, 1] of the free room

    @property
    def kind(self) -> tuple[str, str, str]:
        return (self.size, self.colour, self.shape)

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    style_seed: int = 0  # background, lighting and degradation come from this seed

    @property
    def caption(self) -> str:
        return describe(self.objects)


def _plural(shape: str) -> str:
    return PLURALS.get(shape, shape + "s")


def describe(objects: tuple[SceneObject, ...] | list[SceneObject]) -> str:
    """The one correct caption of a layout (see the module docstring for the grammar)."""
    objs = list(objects)
    if not objs:
        raise ValueError("a scene needs at least one object")
    groups: dict[tuple[str, str, str], list[SceneObject]] = {}
    for o in objs:
        groups.setdefault(o.kind, []).append(o)
    if len(groups) == 1:
        (kind, members), = groups.items()
        if len(members) == 1:
            o = members[0]
            return f"{o.phrase()} {POSITIONS[o.row][o.col]}"
        size, colour, shape = kind
        return f"{COUNT_WORDS[len(members)]} {size} {colour} {_plural(shape)}"
    if len(groups) == 2 and len(objs) == 3:
        pair, single = sorted(groups.values(), key=len, reverse=True)
        size, colour, shape = pair[0].kind
        return f"{COUNT_WORDS[2]} {size} {colour} {_plural(shape)} and {single[0].phrase()}"
    if len(objs) == 2:
        a, b = objs
        if a.row == b.row:
            first, second = sorted(objs, key=lambda o: o.col)
            return f"{first.phrase()} to the left of {second.phrase()}"
        if a.col == b.col:
            first, second = sorted(objs, key=lambda o: o.row)
            return f"{first.phrase()} above {second.phrase()}"
        raise ValueError("two different objects must share a row or a column")
    if len(objs) == 3:
        if len({o.col for o in objs}) != 3:
            raise ValueError("three different objects must sit in three different columns")
        a, b, c = sorted(objs, key=lambda o: o.col)
        return f"{a.phrase()}, {b.phrase()} and {c.phrase()}"
    raise ValueError(f"unsupported layout of {len(objs)} objects")


# ----------------------------------------------------------------------------- sampling


def _distinct_kinds(rng: np.random.Generator, cfg: SceneConfig, n: int) -> list[tuple[str, str, str]]:
    kinds: list[tuple[str, str, str]] = []
    while len(kinds) < n:
        k = (str(rng.choice(SIZES)), str(rng.choice(cfg.colours)), str(rng.choice(cfg.shapes)))
        if k not in kinds:
            kinds.append(k)
    return kinds


def _cells(rng: np.random.Generator, layout: str, n: int) -> list[tuple[int, int]]:
    if layout == "row":
        r = int(rng.integers(GRID))
        cols = rng.choice(GRID, size=n, replace=False)
        return [(r, int(c)) for c in cols]
    if layout == "column":
        c = int(rng.integers(GRID))
        rows = rng.choice(GRID, size=n, replace=False)
        return [(int(r), c) for r in rows]
    if layout == "columns":  # one object per column, any rows
        cols = rng.permutation(GRID)[:n]
        return [(int(rng.integers(GRID)), int(c)) for c in cols]
    flat = rng.choice(GRID * GRID, size=n, replace=False)  # anywhere
    return [(int(i) // GRID, int(i) % GRID) for i in flat]


def _place(rng: np.random.Generator, kinds: list[tuple[str, str, str]], cells: list[tuple[int, int]]):
    return tuple(
        SceneObject(shape=k[2], colour=k[1], size=k[0], row=r, col=c,
                    jitter=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))))
        for k, (r, c) in zip(kinds, cells)
    )


def sample_scene(rng: np.random.Generator, cfg: SceneConfig = SceneConfig()) -> Scene:
    """Draw a random layout whose caption follows the grammar."""
    weights = np.array(OBJECT_COUNT_WEIGHTS[: cfg.max_objects])
    n = int(rng.choice(np.arange(1, cfg.max_objects + 1), p=weights / weights.sum()))
    if n == 1:
        objs = _place(rng, _distinct_kinds(rng, cfg, 1), _cells(rng, "any", 1))
    elif n == 2:
        if rng.random() < 0.3:
            objs = _place(rng, _distinct_kinds(rng, cfg, 1) * 2, _cells(rng, "any", 2))
        else:
            layout = "row" if rng.random() < 0.5 else "column"
            objs = _place(rng, _distinct_kinds(rng, cfg, 2), _cells(rng, layout, 2))
    else:
        u = rng.random()
        if u < 0.2:
            objs = _place(rng, _distinct_kinds(rng, cfg, 1) * 3, _cells(rng, "any", 3))
        elif u < 0.6:
            a, b = _distinct_kinds(rng, cfg, 2)
            objs = _place(rng, [a, a, b], _cells(rng, "any", 3))
        else:
            objs = _place(rng, _distinct_kinds(rng, cfg, 3), _cells(rng, "columns", 3))
    return Scene(objects=objs, style_seed=int(rng.integers(2**31)))


# ----------------------------------------------------------------------------- rendering


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if shape == "square":
        t = np.deg2rad(45 + angle) + np.arange(4) * np.pi / 2
        rr = np.full(4, r * 1.05)
    elif shape == "diamond":
        t = np.deg2rad(angle) + np.arange(4) * np.pi / 2
        rr = np.array([r * 1.15, r * 0.75, r * 1.15, r * 0.75])
    elif shape == "triangle":
        t = np.deg2rad(-90 + angle) + np.arange(3) * 2 * np.pi / 3
        rr = np.full(3, r * 1.15)
    elif shape == "star":
        t = np.deg2rad(-90 + angle) + np.arange(10) * np.pi / 5
        rr = np.where(np.arange(10) % 2 == 0, r * 1.15, r * 0.48)
    elif shape == "cross":
        a, b = r * 1.0, r * 0.36
        pts = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a),
                        (-b, b), (-a, b), (-a, -b), (-b, -b)])
        th = np.deg2rad(angle)
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        return (pts @ rot.T + (cx, cy)).astype(np.float32)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], axis=1).astype(np.float32)


def _background(rng: np.random.Generator, cfg: SceneConfig, s: int) -> np.ndarray:
    base = rng.uniform(70, 170)
    tint = rng.uniform(-12, 12, size=3)
    img = np.full((s, s, 3), base, np.float32) + tint
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    kind = rng.integers(5)
    amp = rng.uniform(8, 30) * cfg.texture
    if kind == 1:  # stripes
        th, freq = rng.uniform(0, np.pi), rng.uniform(3, 12)
        img += (amp * np.sin(2 * np.pi * freq * (xx * np.cos(th) + yy * np.sin(th))))[..., None]
    elif kind == 2:  # checker
        n = int(rng.integers(3, 10))
        img += (amp * (((xx * n).astype(int) + (yy * n).astype(int)) % 2 * 2 - 1))[..., None]
    elif kind == 3:  # smooth blotches
        low = rng.normal(0, 1, size=(int(rng.integers(3, 8)),) * 2).astype(np.float32)
        img += (amp * cv2.resize(low, (s, s), interpolation=cv2.INTER_CUBIC))[..., None]
    elif kind == 4:  # fine grain
        img += (amp * 0.6 * rng.normal(0, 1, size=(s, s)).astype(np.float32))[..., None]
    return img


def render(scene: Scene, cfg: SceneConfig = SceneConfig(), frame_seed: int | None = None) -> np.ndarray:
    """Draw a scene as a BGR uint8 image of cfg.size x cfg.size.

    Background, object tints and lighting come from ``scene.style_seed``; global gain, noise, blur
    and JPEG come from ``frame_seed`` when given (the animated camera varies only those per frame).
    """
    rng = np.random.default_rng(scene.style_seed)
    s = cfg.size
    img = _background(rng, cfg, s)
    cell = s / GRID
    shift = 4  # sub-pixel precision for cv2 drawing
    for o in scene.objects:
        r = cell * (0.42 if o.size == "large" else 0.29)
        room = max(cell / 2 - r * 1.15, 0.0)
        cx = (o.col + 0.5) * cell + o.jitter[0] * room
        cy = (o.row + 0.5) * cell + o.jitter[1] * room
        colour = np.clip(np.array(COLOURS[o.colour], np.float32) + rng.uniform(-15, 15, 3), 0, 255)
        angle = float(rng.uniform(-12, 12))
        canvas = np.zeros((s, s), np.uint8)
        if o.shape == "circle":
            cv2.circle(canvas, (int(cx * 16), int(cy * 16)), int(r * 16), 255, -1, cv2.LINE_AA, shift)
        else:
            pts = np.round(_shape_points(o.shape, cx, cy, r, angle) * 16).astype(np.int32)
            cv2.fillPoly(canvas, [pts], 255, cv2.LINE_AA, shift)
        alpha = (canvas.astype(np.float32) / 255.0)[..., None]
        img = img * (1 - alpha) + colour * alpha
    # lighting: global gain plus a linear gradient
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    th = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(0, cfg.lighting) * (xx * np.cos(th) + yy * np.sin(th))
    if frame_seed is not None:
        rng = np.random.default_rng(frame_seed)
    gain = 1 + rng.uniform(-cfg.lighting, cfg.lighting)
    img = img * (gain * grad)[..., None]
    if cfg.noise > 0:
        img += rng.normal(0, rng.uniform(0, cfg.noise), size=img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < cfg.blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.1)))
    if rng.random() < cfg.jpeg_prob:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 91))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def generate(seed: int, cfg: SceneConfig = SceneConfig()) -> tuple[np.ndarray, str]:
    """(BGR image, caption) for one seed; the same seed always gives the same pair."""
    scene = sample_scene(np.random.default_rng(seed), cfg)
    return render(scene, cfg), scene.caption


def generate_batch(start_seed: int, n: int, cfg: SceneConfig = SceneConfig()):
    """n scenes for seeds start_seed .. start_seed+n-1: (uint8 array (n,H,W,3), list of captions)."""
    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    captions = []
    for i in range(n):
        images[i], cap = generate(start_seed + i, cfg)
        captions.append(cap)
    return images, captions


# ----------------------------------------------------------------------------- animation


@dataclass
class AnimatedScenes:
    """An endless synthetic camera: scenes that hold, wobble, and change, with known captions.

    Objects drift inside their own cells while a scene holds (so its caption stays true), the
    lighting and noise change every frame, and every ``hold_s`` seconds one event happens:
    an object enters, leaves, changes colour, or the whole scene is replaced.
    ``frame(i)`` is deterministic: the same seed and index give the same frame and caption.
    """

    seed: int = 0
    fps: float = 15.0
    hold_s: float = 3.0  # seconds each layout stays on screen
    cfg: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.hold_s <= 0:
            raise OptionError(f"fps and hold_s must be positive, got fps={self.fps} hold_s={self.hold_s}")
        self._layouts: list[Scene] = []
        self._rng = np.random.default_rng(self.seed)

    @property
    def frames_per_layout(self) -> int:
        return max(1, int(round(self.fps * self.hold_s)))

    def layout(self, k: int) -> Scene:
        while len(self._layouts) <= k:
            prev = self._layouts[-1] if self._layouts else None
            self._layouts.append(self._next_layout(prev))
        return self._layouts[k]

    def _next_layout(self, prev: Scene | None) -> Scene:
        rng = self._rng
        if prev is not None:
            for _ in range(20):  # try a small event first; fall back to a new scene
                cand = self._event(rng, prev)
                if cand is None:
                    continue
                try:
                    caption = describe(cand)
                except ValueError:  # e.g. an object entered diagonally to another one
                    continue
                if caption != prev.caption:
                    return Scene(cand, style_seed=int(rng.integers(2**31)))
        return sample_scene(rng, self.cfg)

    def _event(self, rng: np.random.Generator, prev: Scene):
        objs = list(prev.objects)
        kind = rng.choice(["enter", "leave", "recolour", "new"], p=[0.3, 0.25, 0.3, 0.15])
        if kind == "leave" and len(objs) > 1:
            objs.pop(int(rng.integers(len(objs))))
            return tuple(objs)
        if kind == "enter" and len(objs) < self.cfg.max_objects:
            used = {(o.row, o.col) for o in objs}
            free = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in used]
            (k,) = _distinct_kinds(rng, self.cfg, 1)
            r, c = free[int(rng.integers(len(free)))]
            return tuple(objs) + _place(rng, [k], [(r, c)])
        if kind == "recolour":
            i = int(rng.integers(len(objs)))
            colour = str(rng.choice([c for c in self.cfg.colours if c != objs[i].colour]))
            objs[i] = dataclasses.replace(objs[i], colour=colour)
            return tuple(objs)
        if kind == "new":
            return sample_scene(rng, self.cfg).objects
        return None  # the event does not apply to this layout (e.g. leave with one object)

    def frame(self, i: int) -> tuple[np.ndarray, str]:
        """(BGR image, caption) of frame i."""
        k, t = divmod(i, self.frames_per_layout)
        scene = self.layout(k)
        phase = 2 * np.pi * t / self.frames_per_layout

        def drift(o: SceneObject, j: int) -> SceneObject:  # a loop inside the object's own cell
            dx = o.jitter[0] * np.cos(phase) + 0.5 * np.sin(phase + j)
            dy = o.jitter[1] * np.cos(phase) + 0.5 * np.cos(phase + j)
            return dataclasses.replace(o, jitter=(float(np.clip(dx, -1, 1)), float(np.clip(dy, -1, 1))))

        wobble = tuple(drift(o, j) for j, o in enumerate(scene.objects))
        return render(Scene(wobble, scene.style_seed), self.cfg, frame_seed=self.seed * 1_000_003 + i), scene.caption
