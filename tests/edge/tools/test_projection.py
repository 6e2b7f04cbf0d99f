"""benchmarks/project.py projects Raspberry Pi 4 / Pi 5 / Edge TPU speed two independent ways, and its
arithmetic and its measured peak are what its docstring says."""

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from velm_edge.runtime.bundle import SHAPES_BUNDLE
from velm_edge.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]


def load_project():
    return load_script(ROOT / "benchmarks" / "project.py")


def test_peak_times_efficiency_arithmetic():
    project = load_project()
    ms = {"preprocess": 0.5, "vision": 1.0, "decode_invoke": 0.05, "python_glue": 0.3}
    bench = {k: {"median": v} for k, v in ms.items()} | {"steps_per_caption": 10.0}
    macs = 20e6  # at 1.0 ms: 20 G MAC/s here
    first = project.project(bench, {"vision": macs, "language": 0.4e6})
    second = project.project_from_peaks(first, macs, peak_here=80e9)
    assert second["here"]["efficiency"] == pytest.approx(0.25)
    assert second["pi4"]["vision"] == pytest.approx(macs / (12e9 * 0.25) * 1e3)  # 6.67 ms on one A72 core
    assert second["pi5"]["vision"] == pytest.approx(macs / (76.8e9 * 0.25) * 1e3)
    for name in ("pi4", "pi5"):  # only the vision graph differs between the two estimates
        assert {k: second[name][k] for k in ("decode", "preprocess", "python_glue")} == \
               {k: first[name][k] for k in ("decode", "preprocess", "python_glue")}
        assert second[name]["caption_ms"] == pytest.approx(
            sum(second[name][k] for k in ("vision", "decode", "preprocess", "python_glue")))
    assert second["edgetpu"]["caption_ms"] == pytest.approx(first["edgetpu"]["caption_ms"])  # same cited rate
    assert first["pi4"]["decode"] == pytest.approx(10 * 0.05 * first["pi4"]["core_slower_than_here"])


def test_the_decoder_is_the_larger_of_its_per_call_and_memory_bounds():
    project = load_project()
    ms = {"preprocess": 0.5, "vision": 1.0, "decode_invoke": 0.05, "python_glue": 0.3}
    bench = {k: {"median": v} for k, v in ms.items()} | {"steps_per_caption": 10.0}
    small, large = (project.project(bench, {"vision": 20e6, "language": 0.4e6}, weights) for weights in (1e4, 4e6))
    for name in ("pi4", "pi5"):
        bandwidth = project.BANDWIDTH[name]["bytes_per_s"]
        assert large[name]["decode_memory"] == pytest.approx(10 * 4e6 / bandwidth * 1e3)  # 10 invokes x 4 MB
        assert small[name]["decode_bound"] == "per-call" and large[name]["decode_bound"] == "memory"
        assert large[name]["decode"] == max(large[name]["decode_memory"], large[name]["decode_per_call"])
        assert small[name]["decode"] == small[name]["decode_per_call"]
    assert large["edgetpu"]["decode"] == large["pi4"]["decode"]  # the decoder runs on the host Pi 4


def test_python_is_scaled_by_the_published_python_ratio_and_the_interpreter_by_the_simd_one():
    project = load_project()
    ms = {"preprocess": 0.5, "vision": 1.0, "decode_invoke": 0.05, "python_glue": 0.3}
    bench = {k: {"median": v} for k, v in ms.items()} | {"steps_per_caption": 10.0}
    here = project.PYTHON["pi4"]["s_per_step"] / 4  # this machine runs n-body 4x as fast as a Pi 4
    p = project.project(bench, {"vision": 20e6, "language": 0.4e6}, 0.0, here)
    assert p["pi4"]["python_slower_than_here"] == pytest.approx(4.0)
    assert p["pi4"]["python_glue"] == pytest.approx(0.3 * 4.0)
    assert p["pi5"]["python_glue"] == pytest.approx(0.3 * 4.0 / 1.6)  # scaled by clock, 2.4 against 1.5 GHz
    assert p["pi4"]["decode_per_call"] == pytest.approx(10 * 0.05 * p["pi4"]["core_slower_than_here"])
    assert p["pi4"]["preprocess"] == pytest.approx(0.5 * p["pi4"]["core_slower_than_here"])
    assert p["edgetpu"]["python_glue"] == p["pi4"]["python_glue"]  # Python runs on the host Pi 4
    with pytest.raises(SystemExit, match="decode_invoke"):  # a bench file from before the split is refused
        project.project({k: {"median": 1.0} for k in ("preprocess", "vision", "decode_step", "python_glue")}
                        | {"steps_per_caption": 10.0}, {"vision": 20e6, "language": 0.4e6})


def test_nbody_runs_and_its_energy_is_the_benchmarks_games():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nbody.py"), "1000"], capture_output=True,
                         text=True, timeout=60)
    assert run.stdout.split() == ["-0.169075164", "-0.169087605"]


@pytest.mark.skipif(platform.machine() != "x86_64" or not (shutil.which("cc") or shutil.which("gcc")),
                    reason="the peak benchmark is AVX2 C")
def test_measured_peak_is_a_plausible_core_rate():
    peak = load_project().measure_peak(runs=1)
    assert 5e9 < peak < 1e12  # 16-32 MACs per cycle at 1-5 GHz; a loop the compiler removed reads as 1e17


def test_the_script_projects_the_shapes_model_above_ten_captions_per_second_on_a_pi_4():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "project.py"), str(SHAPES_BUNDLE), "--images", "30",
                          "--peak", "60", "--nbody", "7"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    pi4 = [line for line in run.stdout.splitlines() if line.startswith("| Raspberry Pi 4")]
    assert len(pi4) == 2, run.stdout  # one row per estimate
    assert all(float(row.rstrip(" |").rsplit("|", 1)[1]) >= 10 for row in pi4), pi4
    assert "PROJECTED (not measured)" in run.stdout
    assert "60.0 G MAC/s (given)" in run.stdout
