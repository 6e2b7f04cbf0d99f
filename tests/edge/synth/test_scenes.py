import re
from collections import Counter

import numpy as np
import pytest

from velm_edge.synth import scenes
from velm_edge.synth.scenes import AnimatedScenes, SceneConfig, SceneObject, describe

# The grammar, written independently of scenes.describe.
OBJ = r"a (small|large) ({c}) ({s})".format(c="|".join(scenes.COLOURS), s="|".join(scenes.SHAPES))
PLURAL = r"(two|three) (small|large) ({c}) ({p})".format(
    c="|".join(scenes.COLOURS), p="|".join(s + ("es" if s.endswith("s") else "s") for s in scenes.SHAPES))
POS = r"(in the top left|at the top|in the top right|on the left|in the center|on the right|" \
      r"in the bottom left|at the bottom|in the bottom right)"
GRAMMAR = re.compile("^(" + "|".join([
    f"{OBJ} {POS}",
    PLURAL,
    f"{OBJ} (to the left of|above) {OBJ}",
    f"{PLURAL} and {OBJ}",
    f"{OBJ}, {OBJ} and {OBJ}",
]) + ")$")


def test_same_seed_same_scene_and_different_seeds_differ():
    a_img, a_cap = scenes.generate(123)
    b_img, b_cap = scenes.generate(123)
    c_img, _ = scenes.generate(124)
    assert a_cap == b_cap
    np.testing.assert_array_equal(a_img, b_img)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (96, 96, 3) and a_img.dtype == np.uint8


def test_captions_follow_the_grammar_and_cover_the_vocabulary():
    caps = [scenes.generate(s)[1] for s in range(1500)]
    bad = [c for c in caps if not GRAMMAR.match(c)]
    assert not bad, bad[:5]
    words = Counter(w for c in caps for w in c.replace(",", "").split())
    for w in list(scenes.COLOURS) + list(scenes.SHAPES) + ["small", "large", "two", "three", "above", "left"]:
        assert words[w] > 0, w
    kinds = Counter("three" if c.startswith("three") else "pair+1" if " and a " in c and c.startswith("two")
                    else "list" if "," in c else "two" if c.startswith("two") else "relation"
                    if ("above" in c or "left of" in c) else "single" for c in caps)
    assert all(kinds[k] > 20 for k in ("single", "two", "three", "relation", "pair+1", "list")), kinds
    assert len({len(c.split()) for c in caps}) >= 5


def test_describe_orders_objects_by_position_and_groups_counts():
    red = SceneObject("circle", "red", "small", row=1, col=2)
    blue = SceneObject("square", "blue", "large", row=1, col=0)
    assert describe([red, blue]) == "a large blue square to the left of a small red circle"
    top = SceneObject("star", "green", "small", row=0, col=1)
    low = SceneObject("star", "pink", "small", row=2, col=1)
    assert describe([low, top]) == "a small green star above a small pink star"
    assert describe([SceneObject("cross", "cyan", "small", 0, 0), SceneObject("cross", "cyan", "small", 2, 2)]) \
        == "two small cyan crosses"
    pair = [SceneObject("circle", "red", "small", 0, 0), SceneObject("circle", "red", "small", 2, 1)]
    assert describe(pair + [blue]) == "two small red circles and a large blue square"
    listed = [SceneObject("star", "green", "small", 2, 2), red.__class__("circle", "red", "small", 0, 1), blue]
    assert describe(listed) == "a large blue square, a small red circle and a small green star"
    assert describe([top]) == "a small green star at the top"


def test_ambiguous_layouts_are_refused():
    a = SceneObject("circle", "red", "small", 0, 0)
    b = SceneObject("square", "blue", "small", 1, 1)
    with pytest.raises(ValueError, match="share a row or a column"):
        describe([a, b])
    with pytest.raises(ValueError, match="at least one object"):
        describe([])


def test_config_is_validated_and_respected():
    with pytest.raises(ValueError, match="unknown shape"):
        SceneConfig(shapes=("circle", "blob"))
    with pytest.raises(ValueError, match="max_objects"):
        SceneConfig(max_objects=4)
    cfg = SceneConfig(size=64, shapes=("circle", "square"), colours=("red", "blue"), max_objects=1)
    for s in range(50):
        img, cap = scenes.generate(s, cfg)
        assert img.shape == (64, 64, 3)
        assert re.match(r"^a (small|large) (red|blue) (circle|square) ", cap), cap


def test_objects_are_drawn_where_the_caption_says():
    # A flat, clean scene: the object's colour must dominate its grid cell and nowhere else.
    cfg = SceneConfig(texture=0, noise=0, lighting=0, blur_prob=0, jpeg_prob=0)
    obj = SceneObject("square", "red", "large", row=2, col=0)
    img = scenes.render(scenes.Scene((obj,), style_seed=3), cfg)
    cell = 96 // 3
    redness = img[..., 2].astype(int) - img[..., 1].astype(int)
    per_cell = [[redness[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].mean() for c in range(3)] for r in range(3)]
    assert np.argmax(per_cell) == 2 * 3 + 0


def test_animated_scenes_are_deterministic_and_change():
    a = AnimatedScenes(seed=7, fps=10, hold_s=0.5)
    b = AnimatedScenes(seed=7, fps=10, hold_s=0.5)
    frames = [a.frame(i) for i in range(60)]
    np.testing.assert_array_equal(frames[17][0], b.frame(17)[0])
    caps = [c for _, c in frames]
    assert all(GRAMMAR.match(c) for c in caps)
    # every caption holds for a whole layout, then changes
    per_layout = a.frames_per_layout
    assert per_layout == 5
    for k in range(len(caps) // per_layout):
        assert len(set(caps[k * per_layout:(k + 1) * per_layout])) == 1
        if k:
            assert caps[k * per_layout] != caps[k * per_layout - 1]
    # objects move between frames of one layout
    assert not np.array_equal(frames[0][0], frames[1][0])
    with pytest.raises(ValueError, match="fps"):
        AnimatedScenes(fps=0)
