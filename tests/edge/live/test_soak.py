"""The short soak (60 s) as CI runs it; the 10-minute one is `python benchmarks/soak.py`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_a_minute_of_faults_and_misbehaving_clients(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--seconds", "60", "--period", "14",
                          "--frozen_s", "3", "--json", str(out)], capture_output=True, text=True, timeout=240)
    report = json.loads(out.read_text())
    assert run.returncode == 0, run.stdout[-3000:]
    assert all(report["checks"].values())
    assert [f["kind"] for f in report["faults"]] == ["fail", "stall", "garbage", "freeze"]
    assert report["reconnects"] >= 4 and report["frozen_detected"] >= 1 and report["bad_frames"] > 0
    assert report["captions"] > 600 and report["clients"]["sessions"] > 50
