"""One TFLite graph of a bundle, reached by input and output *names* (its serving signature).

The hot path (``set`` / ``invoke`` / ``get``) talks to the interpreter by tensor index, which skips
the signature runner's per-call dictionaries; ``invoke`` also keeps a running total of the time spent
inside the interpreter, so a benchmark can split a caption into interpreter time and Python glue.
"""

from __future__ import annotations

import time

import numpy as np

from velm_edge.errors import BundleError, EdgeTPUError
from velm_edge.runtime import backend
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.runtime.quant import QParams


def _by_position(named: dict, plain: list[dict], compiled: list[dict], label: str) -> dict:
    """Signature details of the plain graph, moved to the compiled graph's tensors at the same positions."""
    def kinds(details):
        return [(tuple(int(n) for n in d["shape"]), np.dtype(d["dtype"]).name, tuple(d["quantization"]))
                for d in details]

    if kinds(plain) != kinds(compiled):
        raise BundleError(f"{label}: the compiled graph's inputs or outputs differ from the plain graph's: "
                          f"{kinds(compiled)} against {kinds(plain)}")
    position = {d["index"]: i for i, d in enumerate(plain)}
    return {name: {**d, "index": compiled[position[d["index"]]]["index"]} for name, d in named.items()}


class Graph:
    """A loaded graph.  Not thread-safe: one instance per thread (see ``Captioner``)."""

    def __init__(self, model: bytes, label: str, options: RuntimeOptions = RuntimeOptions(),
                 edgetpu_model: bytes | None = None):
        self.label, self.threads = label, options.threads  # None: the interpreter package's choice
        try:
            self.interpreter, self.info = backend.make_interpreter(model, options, edgetpu_model)
        except EdgeTPUError:
            raise
        except (ValueError, RuntimeError) as e:  # the flatbuffer verifier or allocation refused it
            raise BundleError(f"{label}: not a valid TFLite model ({str(e).strip().splitlines()[0]})") from None
        self.inputs, self.outputs = self._io(self.interpreter)
        if self.inputs is None and self.info.get("compiled"):
            self.inputs, self.outputs = self._io_by_position(model, options.backend)
        if self.inputs is None:
            raise BundleError(f"{label}: expected one serving signature, found "
                              f"{sorted(self.interpreter.get_signature_list())}")
        self._in = {name: d["index"] for name, d in self.inputs.items()}
        self._out = {name: d["index"] for name, d in self.outputs.items()}
        self.invoke_seconds, self.invokes = 0.0, 0
        self.rows = 1  # rows each input takes (``resize_rows``)
        self.tally: Graph | None = None  # another graph whose counters this one's invokes add to

    def _io_by_position(self, model: bytes, backend_name: str) -> tuple[dict | None, dict | None]:
        """The compiler dropped the signature: names from the plain graph, tensors by position (the compiler
        keeps the order; their shapes, types and quantization must match)."""
        plain, _ = backend.make_interpreter(model, RuntimeOptions(threads=1, backend=backend_name))
        names_in, names_out = self._io(plain)
        if names_in is None:
            return None, None
        return (_by_position(names_in, plain.get_input_details(), self.interpreter.get_input_details(), self.label),
                _by_position(names_out, plain.get_output_details(), self.interpreter.get_output_details(), self.label))

    @staticmethod
    def _io(interpreter) -> tuple[dict | None, dict | None]:
        """Inputs and outputs by name from the one serving signature, or (None, None) without one."""
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            return None, None
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        return runner.get_input_details(), runner.get_output_details()

    def qparams(self, name: str, output: bool = False) -> QParams:
        return QParams.of((self.outputs if output else self.inputs)[name])

    def shape(self, name: str, output: bool = False) -> tuple[int, ...]:
        return tuple(int(d) for d in (self.outputs if output else self.inputs)[name]["shape"])

    def dtype(self, name: str, output: bool = False) -> str:
        return np.dtype((self.outputs if output else self.inputs)[name]["dtype"]).name

    def index(self, name: str, output: bool = False) -> int:
        """The interpreter's tensor index of an input or output, for ``set_tensor`` / ``get_tensor`` in hot loops."""
        return (self._out if output else self._in)[name]

    def set(self, name: str, value: np.ndarray) -> None:
        self.interpreter.set_tensor(self._in[name], value)

    def get(self, name: str) -> np.ndarray:
        return self.interpreter.get_tensor(self._out[name])

    def resize_rows(self, rows: int) -> None:
        """Give every input ``rows`` rows (the first dimension) and allocate again; only sound for a graph whose
        operators keep rows apart (``velm_edge.runtime.batching``)."""
        for name, index in self._in.items():
            self.interpreter.resize_tensor_input(index, [rows, *self.shape(name)[1:]], strict=False)
        self.interpreter.allocate_tensors()
        self.rows = rows

    def invoke(self) -> None:
        t = time.perf_counter()
        self.interpreter.invoke()
        tally = self.tally or self
        tally.invoke_seconds += time.perf_counter() - t
        tally.invokes += 1

    def run(self, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        for name, value in arrays.items():
            self.set(name, value)
        self.invoke()
        return {name: self.get(name) for name in self._out}

    def ops(self) -> dict[str, int]:
        """Operator counts of the graph's own nodes (a delegate's wrapper node is left out)."""
        counts: dict[str, int] = {}
        for op in self.interpreter._get_ops_details():  # the only way all interpreter packages expose them
            if op["op_name"] != "DELEGATE":
                counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return counts
