"""The isolated probe: open and run an untrusted bundle once in a child process before this one touches it.

TFLite interpreters have crashed on crafted models, and a crash in native code takes the whole
process with it, checks or no checks.  ``probe(path)`` runs ``Captioner.open(path)`` and two captions
(a grey frame and a synthetic scene) in a child process with an address-space limit, a CPU-time limit
and a wall-clock limit.  A child that is killed by a signal, runs out of memory or time, or refuses
the bundle turns into a ``BundleError`` here, with the reason; this process has not parsed a byte.

The children are forked by a small helper process (``python -m velm_edge.isolate --serve``) that has
already imported the runtime, so a probe costs tens of milliseconds after the first, and nothing here
depends on how the calling program was started.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

from velm_edge.errors import BundleError

MEMORY_MB = 2048  # address space of a probe; the default bundle needs about 500 MB of it (XNNPACK reserves)
TIMEOUT_S = 20.0


# -- the child: runs in a fork of the helper -------------------------------------------------------------

def _try_bundle(path: str, backend: str) -> dict:
    import numpy as np

    from velm_edge import scenes
    from velm_edge.bundle import Bundle, sha256_bytes
    from velm_edge.captioner import Captioner

    try:
        digest = sha256_bytes((Path(path) / "manifest.json").read_bytes())
        with Captioner(Bundle.load(path, digest), backend=backend, num_threads=1) as cap:
            grey = cap.caption(np.full((48, 64, 3), 128, np.uint8))
            scene = cap.caption(scenes.generate(7, scenes.SceneConfig(size=cap.size))[0])
        return {"status": "ok", "captions": [grey.text, scene.text], "manifest_sha256": digest}
    except OSError as e:
        return {"status": "refused", "detail": f"cannot read it ({e.strerror or e})"}
    except BundleError as e:
        return {"status": "refused", "detail": str(e)}
    except MemoryError:
        return {"status": "refused", "detail": "it needed more memory than the probe's limit"}
    except Exception as e:  # anything else the bundle provoked in Python code is a refusal too
        return {"status": "refused", "detail": f"{type(e).__name__}: {e}"}


def _run_child(request: dict) -> dict:
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
            answer = _try_bundle(request["path"], request["backend"])
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
    import velm_edge.captioner  # noqa: F401  (imported once here, inherited by every fork)
    import velm_edge.scenes  # noqa: F401

    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints of a child cannot corrupt the protocol
    for line in sys.stdin:
        out.write(json.dumps(_run_child(json.loads(line))) + "\n")
        out.flush()


# -- the caller's side -------------------------------------------------------------------------------------

class _Helper:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def ask(self, request: dict, timeout_s: float) -> dict | None:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen([sys.executable, "-m", "velm_edge.isolate", "--serve"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, text=True, bufsize=1)
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                if select.select([self.proc.stdout], [], [], timeout_s + 30)[0]:  # + the helper's start-up
                    line = self.proc.stdout.readline()
                    if line:
                        return json.loads(line)
            except (OSError, ValueError):
                pass
            self.proc.kill()  # a helper that does not answer is replaced next time
            self.proc.wait()
            return None


_HELPER = _Helper()


def probe(path: str | Path, timeout_s: float = TIMEOUT_S, memory_mb: int = MEMORY_MB, backend: str = "auto") -> dict:
    """Open and caption with the bundle at ``path`` in a limited child process.  Returns its two captions
    and the sha256 of the manifest it saw (pass that to ``Bundle.load`` so the files cannot be swapped
    between probe and load), or raises ``BundleError`` saying how it was refused, crashed or timed out."""
    where = f"{path}: isolated probe"
    request = {"path": str(Path(path).resolve()), "timeout_s": float(timeout_s), "memory_mb": int(memory_mb),
               "backend": backend}
    answer = _HELPER.ask(request, timeout_s)
    if answer is None:
        raise BundleError(f"{where}: the probe helper did not answer")
    status = answer["status"]
    if status == "ok":
        return answer
    if status == "refused":
        raise BundleError(f"{where}: {answer['detail']}")
    if status == "timeout":
        raise BundleError(f"{where}: did not finish within {timeout_s:g} s; it was not loaded")
    raise BundleError(f"{where}: the interpreter crashed on this bundle ({answer['signal']}); it was not loaded")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit("velm_edge.isolate is started by velm_edge.isolate.probe(); use Captioner.open(..., isolate=True)")
