import dataclasses
import json
import subprocess
import sys

import pytest

from velm_convert import cli as convert_cli
from velm_convert import datasets
from velm_convert.config import TrainConfig
from velm_edge.runtime.bundle import SHAPES_BUNDLE
from velm_edge.synth import scenes
from velm_edge.tools import cli as edge_cli


def test_velm_edge_synth_writes_a_caption_set_that_training_reads(tmp_path, capsys):
    assert edge_cli.main(["synth", "--out", str(tmp_path / "s"), "--count", "12", "--seed", "40", "--size", "64"]) == 0
    data = datasets.load_captions(tmp_path / "s" / "captions.csv", image_size=64)
    assert len(data) == 12
    assert data.captions[3] == [scenes.generate(43, scenes.SceneConfig(size=64))[1]]
    assert "wrote 12 images" in capsys.readouterr().out


def test_velm_edge_synth_animated_and_bad_input(tmp_path, capsys):
    assert edge_cli.main(["synth", "--out", str(tmp_path), "--count", "6", "--animated", "--fps", "2",
                          "--hold_s", "1", "--format", "jpg"]) == 0
    rows = (tmp_path / "captions.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[1].startswith("scene_000000.jpg,")
    assert edge_cli.main(["synth", "--out", str(tmp_path), "--size", "10"]) == 1
    assert "size must be at least 32" in capsys.readouterr().err


def test_console_scripts_are_installed():
    out = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("velm-edge ")


def test_train_help_explains_every_option():
    text = convert_cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name != "scene_config":
            assert f"--{f.name.replace('_', '-')}" in text, f.name
    flat = " ".join(text.split())
    assert f"(default: {TrainConfig.train_scenes})" in flat and "teacher forcing" in flat


def test_evaluate_help_explains_every_option():
    text = convert_cli.build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    for opt in ("--dataset", "--scenes", "--seed", "--annotations", "--images", "--max-images", "--beam-size",
                "--json", "--show", "BLEU", "CIDEr"):
        assert opt in text, opt


def test_evaluate_writes_the_metrics_as_json(tiny_run, tmp_path, capsys):
    out, velm = tiny_run
    report = tmp_path / "eval.json"
    assert convert_cli.main(["evaluate", str(out / "model.keras"), "--scenes", "40", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(report.read_text())["metrics"]
    assert figures["images"] == 40 and set(figures) >= {"exact_match", "bleu1", "bleu4", "cider"}
    assert f"{figures['bleu1']:.4f}" in printed


def test_evaluate_on_a_csv_caption_set_and_its_errors(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    edge_cli.main(["synth", "--out", str(tmp_path / "s"), "--count", "10", "--size", "64"])
    rc = convert_cli.main(["evaluate", str(out / "model.keras"), "--dataset", "csv",
                           "--annotations", str(tmp_path / "s" / "captions.csv"), "--json", str(tmp_path / "e.json")])
    assert rc == 0 and json.loads((tmp_path / "e.json").read_text())["metrics"]["images"] == 10
    assert convert_cli.main(["evaluate", str(out / "model.keras"), "--dataset", "csv"]) == 1
    assert "--annotations is required" in capsys.readouterr().err
    assert convert_cli.main(["evaluate", str(tmp_path / "nope.keras")]) == 1
    assert "no model file" in capsys.readouterr().err


def test_caption_command_prints_captions_with_the_truth(tiny_run, capsys):
    out, _ = tiny_run
    assert convert_cli.main(["caption", str(out / "model.keras"), "--synth", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("(truth: " in line for line in lines)
    assert convert_cli.main(["caption", str(out / "model.keras"), "--synth", "4", "--animated", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    camera = scenes.AnimatedScenes(seed=2, fps=15.0, hold_s=1.0, cfg=scenes.SceneConfig(size=64))
    assert [line.split("(truth: ")[1].rstrip(")") for line in lines] == [camera.frame(i)[1] for i in range(4)]


@pytest.mark.parametrize("argv", [["train", "--dataset", "parquet"], ["train", "--backbone", "resnet"]])
def test_train_refuses_unknown_choices(argv, capsys):
    with pytest.raises(SystemExit):
        convert_cli.main(argv)
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_export_on_a_csv_caption_set_then_evaluate_the_bundle(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    edge_cli.main(["synth", "--out", str(tmp_path / "s"), "--count", "20", "--size", "64", "--seed", "77"])
    capsys.readouterr()
    bundle = tmp_path / "mine.velm"
    argv = ["export", str(out / "model.keras"), "--out", str(bundle), "--dataset", "csv",
            "--annotations", str(tmp_path / "s" / "captions.csv"), "--calib_images", "12", "--parity_images", "8"]
    assert convert_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "op check language:" in printed and "0 float tensors; all Edge TPU ops" in printed
    assert "identical captions" in printed and "report.md" in printed
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["calibration"]["images"] == 12 and manifest["metrics"]["images"] == 8
    assert convert_cli.main(argv) == 1  # an existing bundle is kept
    assert "exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert convert_cli.main(["evaluate", "--bundle", str(bundle), "--scenes", "10", "--json",
                             str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["images"] == 10 and result["precision"] == "int8" and "agreement" not in result
    with pytest.raises(SystemExit, match="give a MODEL.keras, or --bundle NAME.velm"):
        convert_cli.main(["evaluate"])


@pytest.mark.slow
def test_recipe_prints_and_runs_its_commands_then_compares_with_the_shipped_bundle(tmp_path, capsys):
    from velm_convert import recipe
    from velm_edge.runtime.captioner import Captioner

    out = tmp_path / "smoke"
    assert convert_cli.main(["recipe", "smoke", "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    for bar in ("rendering", "recording decode trajectories", "captioning"):  # --no-progress reaches both steps
        assert bar not in captured.err, captured.err[-2000:]
    steps = recipe.RECIPES["smoke"].commands(out, "smoke")
    for argv in steps:  # each step is shown as the command line a person could type
        assert f"velm-convert {argv[0]} " in printed and " ".join(argv[1:3]) in printed
    result = json.loads((out / "recipe.json").read_text())
    shipped = json.loads((SHAPES_BUNDLE / "manifest.json").read_text())["metrics"]["bundle"]
    built = json.loads((out / "smoke.velm" / "manifest.json").read_text())
    assert result["exact_match"]["shipped"] == shipped["exact_match"]
    assert result["exact_match"]["built"] == built["metrics"]["bundle"]["exact_match"]
    assert built["metrics"]["images"] == 40 and built["model"]["train_images"] == 400
    assert json.loads((out / "model" / "train.json").read_text())["train_config"]["seed"] == 0
    with Captioner.open(out / "smoke.velm") as cap:  # the device loads what the recipe built
        assert isinstance(cap.caption(scenes.generate(5, scenes.SceneConfig(size=80))[0]).text, str)
    # a second run does not overwrite the first without being asked
    assert convert_cli.main(["recipe", "smoke", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # an unknown recipe is refused by the parser, naming the choices
        convert_cli.main(["recipe", "nope", "--out", str(tmp_path / "other")])
    assert stop.value.code == 2 and "smoke" in capsys.readouterr().err


def test_the_photo_recipe_needs_a_data_folder_and_its_commands_parse(tmp_path, capsys):
    from velm_convert import recipe

    assert convert_cli.main(["recipe", "photo", "--out", str(tmp_path / "p")]) == 1
    assert "needs --data" in capsys.readouterr().err
    assert convert_cli.main(["recipe", "photo", "--data", "/data/flickr8k", "--out", str(tmp_path / "p")]) == 1
    assert "needs --text-captions" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # refused before anything was written
    steps = recipe.RECIPES["photo"].commands(tmp_path, "photo", "/data/flickr8k", "/data/coco.csv")
    assert recipe.RECIPES["photo"].steps == tuple(s[0] for s in steps) == ("detector", "train", "export")
    detector, train, export = (convert_cli.build_parser().parse_args(s) for s in steps)
    assert detector.target == str(tmp_path / "detector") and detector.data == "/data/flickr8k"
    assert (train.dataset, train.annotations, train.backbone, train.seed) == ("flickr8k", "/data/flickr8k",
                                                                              "efficientnet_lite0", 0)
    assert train.tags and train.text_captions == "/data/coco.csv" and train.image_dropout == 0.25
    assert export.annotations == "/data/flickr8k" and export.beam_size == 3 and export.precision == "int8"
    assert train.detector == export.detector == detector.target  # trained on the detector the bundle ships


def test_the_converters_info_lines_are_printed():
    code = ("from velm_convert.cli import configure_logging; import logging; configure_logging(False); "
            "logging.getLogger('velm_convert.train').info('epoch 1 of 7')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "epoch 1 of 7" in run.stderr
