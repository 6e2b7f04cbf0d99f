"""Recipes: a shipped bundle rebuilt from nothing with one command and a fixed seed.

``velm-convert recipe default --out runs/recipe`` runs exactly the ``velm-convert`` commands below
(training on 60,000 synthetic scenes, int8 export with calibration and the op check, parity on 500
held-out scenes) and then compares the new bundle's quality with the bundle shipped in the package.
Everything is counted in epochs and scenes, never in minutes, so a slow machine gets the same model
later instead of a worse one.  The steps are plain CLI lines, printed before they run, so a recipe can
also be followed by hand.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    summary: str
    train: tuple[str, ...]
    export: tuple[str, ...]

    def commands(self, out: Path, name: str) -> list[list[str]]:
        model = out / "model"
        return [["train", "--out", str(model), *self.train],
                ["export", str(model / "model.keras"), "--out", str(out / f"{name}.velm"), *self.export]]


RECIPES = {
    # The bundle in velm_edge/models/default.velm.  About 40 minutes on 2 x86-64 cores.
    "default": Recipe(
        "the shipped default model: 60k synthetic scenes, 7 epochs, seed 0, int8",
        train=("--dataset", "synth", "--train_scenes", "60000", "--val_scenes", "1000", "--epochs", "7",
               "--batch_size", "32", "--learning_rate", "0.002", "--patience", "3", "--seed", "0"),
        export=("--precision", "int8", "--calib_images", "200", "--calib_samples", "2000",
                "--parity_images", "2000"),
    ),
    # The same steps on a toy budget (about a minute): checks a toolchain end to end, not a model to use.
    "smoke": Recipe(
        "a toolchain check: 400 scenes, 1 epoch, small calibration and parity sets (not a useful model)",
        train=("--dataset", "synth", "--train_scenes", "400", "--val_scenes", "40", "--epochs", "1",
               "--batch_size", "32", "--seed", "0", "--workers", "1"),
        export=("--precision", "int8", "--calib_images", "32", "--calib_samples", "200", "--parity_images", "40"),
    ),
}


def run(name: str, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Run recipe ``name`` into ``out`` and return (and write to OUT/recipe.json) what it measured."""
    from convert import cli
    from velm_edge.bundle import DEFAULT_BUNDLE

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to rebuild into it")
    out.mkdir(parents=True, exist_ok=True)
    steps = RECIPES[name].commands(out, name)
    for argv in steps:  # train and export
        argv.append("--progress" if progress else "--no-progress")
    if overwrite:
        steps[1].append("--overwrite")
    timings = []
    for i, argv in enumerate(steps, 1):
        print(f"[recipe {name} {i}/{len(steps)}] velm-convert {shlex.join(argv)}", flush=True)
        t0 = time.monotonic()
        rc = cli.main(argv)
        timings.append(round(time.monotonic() - t0, 1))
        if rc:
            raise RuntimeError(f"recipe {name}: step {i} (velm-convert {argv[0]}) failed with exit code {rc}")
    bundle = out / f"{name}.velm"
    built = json.loads((bundle / "manifest.json").read_text())["metrics"]
    shipped = json.loads((Path(DEFAULT_BUNDLE) / "manifest.json").read_text())["metrics"]
    result = {
        "recipe": name, "commands": ["velm-convert " + shlex.join(a) for a in steps],
        "seconds": {"train": timings[0], "export": timings[1]},
        "exact_match": {"built": built["bundle"]["exact_match"], "shipped": shipped["bundle"]["exact_match"]},
        "cider": {"built": built["bundle"]["cider"], "shipped": shipped["bundle"]["cider"]},
        "held_out": built["data"],
    }
    result["exact_match"]["difference"] = round(result["exact_match"]["built"] - result["exact_match"]["shipped"], 4)
    (out / "recipe.json").write_text(json.dumps(result, indent=2))
    em = result["exact_match"]
    print(f"[recipe {name}] exact match on {built['data']}: built {em['built']:.3f}, shipped {em['shipped']:.3f} "
          f"({em['difference'] * 100:+.1f} points); train {timings[0]:.0f} s, export {timings[1]:.0f} s; "
          f"bundle at {bundle}")
    return result
