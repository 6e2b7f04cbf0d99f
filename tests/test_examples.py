import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_on_csv_example_runs_as_written(tmp_path):
    env = dict(os.environ, BIN=str(Path(sys.executable).parent), COUNT="160", EPOCHS="1", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(["bash", str(ROOT / "examples" / "train_on_csv.sh"), str(tmp_path / "work")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "work" / "eval.json").read_text())
    assert report["metrics"]["images"] == 100
    assert "scene_000001.png: " in run.stdout
