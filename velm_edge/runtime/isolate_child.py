"""The isolated probe's helper process and its children (the caller's side is isolate.py).

``python -m velm_edge.runtime.isolate_child --serve`` reads one JSON request per line, forks a child
per request that sets memory, CPU-time and core-file limits and then opens and runs the bundle, and
answers how the child ended: ok (with its captions and the manifest's sha256), refused, crashed or
timed out.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from velm_edge.errors import BundleError

# -- the child: runs in a fork of the helper -------------------------------------------------------------

def try_bundle(path: str, backend: str) -> dict:
    """Open the bundle and caption two frames: what a probe's child does once its limits are set."""
    import numpy as np

    from velm_edge.runtime.bundle import Bundle, sha256_bytes
    from velm_edge.runtime.captioner import Captioner
    from velm_edge.runtime.options import RuntimeOptions

    try:
        digest = sha256_bytes((Path(path) / "manifest.json").read_bytes())
        with Captioner(Bundle.load(path, digest), RuntimeOptions(threads=1, backend=backend)) as cap:
            grey = cap.caption(np.full((48, 64, 3), 128, np.uint8))
            noise = cap.caption(np.random.default_rng(7).integers(0, 256, (cap.size, cap.size, 3), np.uint8))
        return {"status": "ok", "captions": [grey.text, noise.text], "manifest_sha256": digest}
    except OSError as e:
        return {"status": "refused", "detail": f"cannot read it ({e.strerror or e})"}
    except BundleError as e:
        return {"status": "refused", "detail": str(e)}
    except MemoryError:
        return {"status": "refused", "detail": "it needed more memory than the probe's limit"}
    except Exception as e:  # anything else the bundle provoked in Python code is a refusal too
        return {"status": "refused", "detail": f"{type(e).__name__}: {e}"}


def run_child(request: dict, attempt: Callable[[str, str], dict] = try_bundle) -> dict:
    """Fork, limit and probe; wait at most the timeout; say how the child ended."""
    import resource

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limits first, then the untrusted bundle
        os.close(read_fd)
        try:
            import faulthandler

            faulthandler.disable()  # a crash here is the expected outcome, not a traceback to print
            limit = request["memory_mb"] << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            cpu = max(1, int(request["timeout_s"]))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
            answer = attempt(request["path"], request["backend"])
            os.write(write_fd, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks, ready = [], select.select([read_fd], [], [], request["timeout_s"])[0]
    if ready:
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    os.close(read_fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if not ready:
        return {"status": "timeout"}
    if os.WIFSIGNALED(status):
        return {"status": "crashed", "signal": signal.Signals(os.WTERMSIG(status)).name}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"status": "crashed", "signal": f"exit code {os.WEXITSTATUS(status)} without an answer"}


def serve() -> None:
    """The helper: one JSON request per line on stdin, one JSON answer per line on stdout."""
    import velm_edge.runtime.captioner  # noqa: F401  (imported once here, inherited by every fork)

    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints of a child cannot corrupt the protocol
    for line in sys.stdin:
        out.write(json.dumps(run_child(json.loads(line))) + "\n")
        out.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit("velm_edge.runtime.isolate_child is started by isolate.probe(); use Captioner.open(..., isolate=True)")
