"""The isolated probe: open and run an untrusted bundle once in a child process before this one touches it.

TFLite interpreters have crashed on crafted models, and a crash in native code takes the whole
process with it, checks or no checks.  ``probe(path)`` runs ``Captioner.open(path)`` and two captions
(a grey frame and a noise frame) in a child process with an address-space limit, a CPU-time limit
and a wall-clock limit.  A child that is killed by a signal, runs out of memory or time, or refuses
the bundle turns into a ``BundleError`` here, with the reason; this process has not parsed a byte.

The children are forked by a small helper process (``python -m velm_edge.runtime.isolate_child``, isolate_child.py)
that has already imported the runtime, so a probe costs tens of milliseconds after the first, and
nothing here depends on how the calling program was started.  ``close()`` ends the helper (it also
ends at exit); the next probe starts it again.
"""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
import threading
from pathlib import Path

from velm_edge.errors import BundleError

MEMORY_MB = 2048  # address space of a probe; the default bundle needs about 500 MB of it (XNNPACK reserves)
TIMEOUT_S = 20.0


# -- the caller's side -------------------------------------------------------------------------------------

class _Helper:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def ask(self, request: dict, timeout_s: float) -> dict | None:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen([sys.executable, "-m", "velm_edge.runtime.isolate_child", "--serve"],
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

    def close(self) -> None:
        """End the helper process (the next probe starts a new one)."""
        with self.lock:
            if self.proc is not None:
                self.proc.stdin.close()  # the helper's loop ends at end of input
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                self.proc.stdout.close()
                self.proc = None


_HELPER = _Helper()
atexit.register(_HELPER.close)


def helper_pid() -> int | None:
    """The helper process's id while one runs (it is started by the first ``probe``), else None."""
    proc = _HELPER.proc
    return proc.pid if proc is not None and proc.poll() is None else None


def close() -> None:
    """End the probe helper process now rather than at exit (it is started again by the next ``probe``)."""
    _HELPER.close()


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
