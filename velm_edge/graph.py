"""One TFLite graph of a bundle, reached by input and output *names* (its serving signature)."""

from __future__ import annotations

import numpy as np

from velm_edge import backend
from velm_edge.quant import QParams


class Graph:
    """A loaded graph: ``run(name=array, ...) -> {output name: array}``.  One instance per thread."""

    def __init__(self, model: bytes, label: str, num_threads: int | None = None, backend_name: str = "auto"):
        self.label = label
        self.interpreter = backend.make_interpreter(model, num_threads, backend_name)
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"{label}: expected one serving signature, found {sorted(signatures)}")
        self._runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        self.inputs = self._runner.get_input_details()
        self.outputs = self._runner.get_output_details()

    def qparams(self, name: str, output: bool = False) -> QParams:
        return QParams.of((self.outputs if output else self.inputs)[name])

    def shape(self, name: str, output: bool = False) -> tuple[int, ...]:
        return tuple(int(d) for d in (self.outputs if output else self.inputs)[name]["shape"])

    def run(self, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        return self._runner(**arrays)
