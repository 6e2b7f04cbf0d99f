"""The isolated probe: an untrusted bundle is opened and run in a limited child first; crashes, hangs and
refusals there become a BundleError here."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from velm_edge.errors import BundleError
from velm_edge.runtime import isolate, isolate_child
from velm_edge.runtime.bundle import Bundle
from velm_edge.runtime.captioner import Captioner


def test_probe_runs_the_bundle_in_a_child_and_pins_its_manifest(shapes_bundle, captioner):
    answer = isolate.probe(shapes_bundle)
    assert answer["manifest_sha256"] == hashlib.sha256((shapes_bundle / "manifest.json").read_bytes()).hexdigest()
    assert len(answer["captions"]) == 2 and all(isinstance(c, str) and c for c in answer["captions"])
    with Captioner.open(shapes_bundle, isolate=True) as cap:
        assert cap.bundle.manifest == captioner.bundle.manifest


def test_a_bundle_changed_after_the_probe_is_refused(bundle_copy):
    digest = isolate.probe(bundle_copy)["manifest_sha256"]
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["name"] = "swapped after the probe"
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="changed since it was probed"):
        Bundle.load(bundle_copy, digest)


def test_refusals_in_the_child_arrive_as_bundle_errors(bundle_copy):
    (bundle_copy / "vision.tflite").write_bytes(b"\x00" * 10)
    with pytest.raises(BundleError, match="isolated probe: .*vision.tflite"):
        Captioner.open(bundle_copy, isolate=True)


def _request(path, timeout_s=5.0):
    return {"path": str(path), "timeout_s": timeout_s, "memory_mb": 2048, "backend": "auto"}


def test_a_child_killed_by_a_signal_is_reported_as_a_crash(shapes_bundle):
    def crash(path, backend):
        os.kill(os.getpid(), signal.SIGSEGV)

    assert isolate_child.run_child(_request(shapes_bundle), crash) == {"status": "crashed", "signal": "SIGSEGV"}


def test_a_child_that_hangs_is_killed_at_the_time_limit(shapes_bundle):
    t0 = time.monotonic()
    hang = lambda path, backend: time.sleep(60)  # noqa: E731
    assert isolate_child.run_child(_request(shapes_bundle, timeout_s=1.0), hang) == {"status": "timeout"}
    assert time.monotonic() - t0 < 5


def test_a_child_over_its_memory_limit_is_refused(shapes_bundle):
    with pytest.raises(BundleError, match="more memory than the probe's limit|crashed"):
        isolate.probe(shapes_bundle, memory_mb=200)


def test_cli_isolate_flag_refuses_a_damaged_bundle_with_exit_code_2(bundle_copy):
    (bundle_copy / "language.tflite").write_bytes(b"TFL3" + b"\x01" * 64)
    for command in (["info", str(bundle_copy)], ["caption", "--bundle", str(bundle_copy), "x.png"]):
        run = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", *command, "--isolate"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "isolated probe" in run.stderr, run.stderr[-1000:]


def test_the_helper_process_can_be_closed_and_starts_again(shapes_bundle):
    isolate.probe(shapes_bundle)
    pid = isolate.helper_pid()
    assert pid is not None and os.path.exists(f"/proc/{pid}")
    isolate.close()
    assert isolate.helper_pid() is None and not os.path.exists(f"/proc/{pid}")  # ended and reaped
    assert isolate.probe(shapes_bundle)["status"] == "ok"  # and the next probe starts a new one
    assert isolate.helper_pid() not in (None, pid)
    isolate.close()
