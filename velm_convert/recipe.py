"""Recipes: a shipped bundle rebuilt from nothing with one command and a fixed seed.

``velm-convert recipe photo --data DIR --text-captions CSV --out runs/recipe-photo`` rebuilds the real-world
bundle from a Flickr8k directory laid out like the shared copy (captions.csv, images/, splits/) and COCO's
text-only captions: training the head on frozen EfficientNet-Lite0 features of the 6,000 training photos and
on the text conditioned on its own object words, the COCO detector converted first (``velm-convert detector``:
NanoDet from an npm package, int8, calibrated on training photos) and the decoder conditioned on its
detections too, then self-critical epochs (``velm_convert.scst``: the decoder's own sampled captions scored by
CIDEr-D), best epoch by dev BLEU-4, int8 export calibrated on training photos with the detector put
into the bundle, parity on the 1,000 test photos. ``velm-convert recipe shapes --out
runs/recipe-shapes`` rebuilds the shapes bundle (60,000 synthetic scenes, int8, parity on 2,000 held-out
scenes). Each runs exactly the ``velm-convert`` commands below and then compares the new bundle's quality with
the one shipped in the package. Everything is counted in epochs and scenes, never in minutes, so a slow
machine gets the same model later instead of a worse one. The steps are plain CLI lines, printed before they
run, so a recipe can also be followed by hand.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from velm_edge.errors import OptionError, VelmError

DATA = "{data}"  # stands for the --data directory in a recipe's arguments
TEXT = "{text}"  # stands for the --text-captions file


@dataclass(frozen=True)
class Recipe:
    summary: str
    train: tuple[str, ...]
    export: tuple[str, ...]
    shipped: str  # the name of the shipped bundle it rebuilds (velm_edge.runtime.bundle.SHIPPED), to compare with
    compare: tuple[str, ...] = ("exact_match", "cider")  # the bundle metrics that are compared
    detector: tuple[str, ...] | None = None  # velm-convert detector's arguments, for a bundle with a detector graph

    @property
    def needs_data(self) -> bool:
        return DATA in self.train + self.export

    @property
    def needs_text(self) -> bool:
        return TEXT in self.train

    @property
    def steps(self) -> tuple[str, ...]:
        return ("detector", "train", "export") if self.detector is not None else ("train", "export")

    def commands(self, out: Path, name: str, data: str | Path | None = None,
                 text: str | Path | None = None) -> list[list[str]]:
        """The velm-convert command lines, in order: with a detector, it is converted first, the decoder trains on
        its detections and the export puts it into the bundle."""
        model = out / "model"
        given = {DATA: data, TEXT: text}

        def fill(args: tuple[str, ...]) -> list[str]:
            return [str(given[a]) if a in given else a for a in args]

        bundle = str(out / f"{name}.velm")
        train = ["train", "--out", str(model), *fill(self.train)]
        export = ["export", str(model / "model.keras"), "--out", bundle, *fill(self.export)]
        if self.detector is None:
            return [train, export]
        folder = str(out / "detector")
        return [["detector", folder, *fill(self.detector)], [*train, "--detector", folder],
                [*export, "--detector", folder]]


RECIPES = {
    # The bundle in velm_edge/models/photo.velm: Flickr8k (research use only) on frozen ImageNet features.
    "photo": Recipe(
        "the shipped real-world model: the COCO detector (NanoDet, int8), then EfficientNet-Lite0 (ImageNet, "
        "frozen) + GRU on Flickr8k's 6,000 training photos and COCO's text-only captions, the decoder conditioned "
        "on the words of its ImageNet classes and on the detector's objects, 8 epochs then 10 self-critical ones, "
        "seed 0, int8, beam search 3 "
        "with no repeated word pair (needs --data, a Flickr8k directory, and --text-captions, COCO's captions.csv)",
        train=("--dataset", "flickr8k", "--annotations", DATA, "--backbone", "efficientnet_lite0",
               "--image-size", "224", "--feature-dim", "512", "--embed-dim", "256", "--units", "512",
               "--dropout", "0.5", "--label-smoothing", "0.1", "--max-length", "18", "--min-count", "5",
               "--batch-size", "64", "--epochs", "8", "--learning-rate", "0.002", "--patience", "3", "--seed", "0",
               "--tags", "--text-captions", TEXT, "--image-dropout", "0.25", "--pooled-dropout", "0.5",
               "--scst-epochs", "10"),
        export=("--dataset", "flickr8k", "--annotations", DATA, "--precision", "int8", "--calib-images", "300",
                "--calib-samples", "3000", "--parity-images", "1000", "--beam-size", "3", "--length-penalty", "0",
                "--no-repeat-ngram", "2", "--ground", "0.3"),
        shipped="photo", compare=("bleu4", "cider"),
        detector=("--data", DATA, "--calib-images", "200", "--check-images", "40"),
    ),
    # The bundle in velm_edge/models/shapes.velm.  About 40 minutes on 2 x86-64 cores.
    "shapes": Recipe(
        "the shipped shapes model (the synthetic camera's): 60k synthetic scenes, 7 epochs, seed 0, int8",
        train=("--dataset", "synth", "--train-scenes", "60000", "--val-scenes", "1000", "--epochs", "7",
               "--batch-size", "32", "--learning-rate", "0.002", "--patience", "3", "--seed", "0"),
        export=("--precision", "int8", "--calib-images", "200", "--calib-samples", "2000",
                "--parity-images", "2000"),
        shipped="shapes",
    ),
    # The same steps on a toy budget (about a minute): checks a toolchain end to end, not a model to use.
    "smoke": Recipe(
        "a toolchain check: 400 scenes, 1 epoch, small calibration and parity sets (not a useful model)",
        train=("--dataset", "synth", "--train-scenes", "400", "--val-scenes", "40", "--epochs", "1",
               "--batch-size", "32", "--seed", "0", "--workers", "1"),
        export=("--precision", "int8", "--calib-images", "32", "--calib-samples", "200", "--parity-images", "40"),
        shipped="shapes",
    ),
}


def run(name: str, out: str | Path, velm_convert: Callable[[list[str]], int], overwrite: bool = False,
        progress: bool = True, data: str | Path | None = None, text: str | Path | None = None) -> dict:
    """Run recipe ``name`` into ``out`` and return (and write to OUT/recipe.json) what it measured.
    ``velm_convert``: runs one velm-convert command line and returns its exit code (``cli.main``)."""
    from velm_edge.runtime.bundle import SHIPPED

    if name not in RECIPES:
        raise OptionError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if recipe.needs_data and data is None:
        raise OptionError(f"recipe {name} needs --data: a Flickr8k directory (captions.csv, images/, splits/)")
    if recipe.needs_text and text is None:
        raise OptionError(f"recipe {name} needs --text-captions: a CSV of captions without images (COCO's "
                          f"captions.csv, e.g. ../shared/data/coco-captions/captions.csv)")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to rebuild into it")
    out.mkdir(parents=True, exist_ok=True)
    steps = recipe.commands(out, name, data, text)
    for argv in steps:  # train, export (and detector)
        argv.append("--progress" if progress else "--no-progress")
    if overwrite:
        steps[recipe.steps.index("export")].append("--overwrite")
    timings = []
    for i, argv in enumerate(steps, 1):
        print(f"[recipe {name} {i}/{len(steps)}] velm-convert {shlex.join(argv)}", flush=True)
        t0 = time.monotonic()
        rc = velm_convert(argv)
        timings.append(round(time.monotonic() - t0, 1))
        if rc:
            raise VelmError(f"recipe {name}: step {i} (velm-convert {argv[0]}) failed with exit code {rc}")
    bundle = out / f"{name}.velm"
    built = json.loads((bundle / "manifest.json").read_text())["metrics"]
    shipped = json.loads((SHIPPED[recipe.shipped] / "manifest.json").read_text())["metrics"]
    result = {
        "recipe": name, "commands": ["velm-convert " + shlex.join(a) for a in steps],
        "seconds": dict(zip(recipe.steps, timings)), "held_out": built["data"],
        "compared_with": f"the shipped {recipe.shipped} bundle",
    }
    for key in recipe.compare:
        result[key] = {"built": built["bundle"][key], "shipped": shipped["bundle"][key],
                       "difference": round(built["bundle"][key] - shipped["bundle"][key], 4)}
    (out / "recipe.json").write_text(json.dumps(result, indent=2))
    figures = "; ".join(f"{k} built {result[k]['built']:.4f}, shipped {result[k]['shipped']:.4f} "
                        f"({result[k]['difference']:+.4f})" for k in recipe.compare)
    took = ", ".join(f"{step} {s:.0f} s" for step, s in result["seconds"].items())
    print(f"[recipe {name}] on {built['data']}: {figures}; {took}; bundle at {bundle}")
    return result
