"""scripts/pi_check.sh end to end (needs qemu-user-static and network access to Debian and PyPI; CI
installs qemu, so it runs there; skipped where qemu is missing)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-aarch64-static") is None, reason="qemu-user-static is not installed")
@pytest.mark.skipif(not (ROOT / ".venv-tflite" / "bin" / "python").exists(), reason="no .venv-tflite (make test)")
def test_aarch64_captions_equal_x86_for_both_interpreter_packages(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "scripts" / "pi_check.sh"), str(tmp_path / "pi")], capture_output=True,
                         text=True, timeout=1500, env={**os.environ, "SCENES": "12"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    out = run.stdout
    assert len(re.findall(r"12 of 12 captions identical to x86 with the same interpreter package", out)) == 4
    assert out.count("on Linux aarch64") == 2  # doctor ran under emulation for both packages
    assert "ai-edge-litert   2.3.0" in out and re.search(r"tflite-runtime\s+2\.14", out)
    assert len(re.findall(r"\d+ JSONL events", out)) == 2
    assert len(re.findall(r"4 of 4 photos with the same detections as x86", out)) == 2  # the detector graph too
