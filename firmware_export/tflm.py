"""The TFLM Python interpreter (``tflite-micro``): the golden reference for the firmware side.

It runs the same kernels as TensorFlow Lite Micro on the MCU (reference kernels, double
rounding). Used to produce expected outputs for C test vectors and to measure the arena.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from firmware_export.errors import FirmwareExportError
from firmware_export.sysutil import quiet_stderr


def _runtime() -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise FirmwareExportError(
            f"the TFLM interpreter is unavailable ({exc}); pip install tflite-micro"
        ) from None
    return runtime


class TflmModel:
    """A model loaded into the TFLM interpreter, with one input and one output."""

    def __init__(
        self, model_bytes: bytes, arena_size: int | None = None, preserve: bool = False
    ) -> None:
        """``preserve`` keeps every tensor readable after an invoke (see :meth:`run_tensors`)."""
        rt = _runtime()
        config = (
            rt.InterpreterConfig.kPreserveAllTensors
            if preserve
            else rt.InterpreterConfig.kAllocationRecording
        )
        try:
            with quiet_stderr():
                self._it = rt.Interpreter.from_bytes(
                    bytes(model_bytes),
                    arena_size=arena_size or max(64 * 1024, 4 * len(model_bytes)),
                    intrepreter_config=config,
                )
        except (RuntimeError, ValueError) as exc:
            raise FirmwareExportError(f"TFLM cannot load the model: {exc}") from None
        self.input = self._it.get_input_details(0)
        self.output = self._it.get_output_details(0)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one input tensor (with its batch dimension) and return the output tensor."""
        self._it.set_input(np.asarray(x, dtype=self.input["dtype"]).reshape(self.input["shape"]), 0)
        with quiet_stderr():
            self._it.invoke()
        return np.array(self._it.get_output(0), copy=True)

    def run_tensors(
        self,
        inputs: np.ndarray,
        tensors: list[int],
        progress: Callable[[int], None] | None = None,
    ) -> dict[int, np.ndarray]:
        """Run every input and collect the (flattened) values of ``tensors``, intermediate
        ones included; needs ``preserve=True``."""
        out: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
        for x in inputs:
            self.invoke(x[None])
            for t in tensors:
                out[t].append(np.array(self._it.GetTensor(t, 0)["tensor_data"]).ravel())
            if progress is not None:
                progress(1)
        return {t: np.stack(v) for t, v in out.items()}

    def run(self, inputs: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Run every input in ``inputs`` (first axis = images); stack the outputs."""
        out = np.empty((len(inputs), *self.output["shape"][1:]), dtype=self.output["dtype"])
        for i, x in enumerate(inputs):
            out[i] = self.invoke(x[None])[0]
            if progress is not None:
                progress(1)
        return out


def _fits(model_bytes: bytes, size: int, probe: np.ndarray) -> bool:
    try:
        m = TflmModel(model_bytes, arena_size=size)
        m.invoke(probe)
    except (FirmwareExportError, RuntimeError, ValueError):
        return False
    return True


def min_arena_size(model_bytes: bytes, upper: int = 1 << 20, granularity: int = 16) -> int:
    """The smallest TFLM arena (bytes, this host's ABI) in which the model allocates and runs.

    Binary search over ``arena_size`` until allocation and invoke succeed.
    """
    probe_model = TflmModel(model_bytes, arena_size=upper)
    probe = np.zeros(probe_model.input["shape"], dtype=probe_model.input["dtype"])
    lo, hi = 0, upper
    if not _fits(model_bytes, hi, probe):
        raise FirmwareExportError(f"the model does not run in a {upper}-byte TFLM arena")
    while hi - lo > granularity:
        mid = (lo + hi) // 2
        if _fits(model_bytes, mid, probe):
            hi = mid
        else:
            lo = mid
    return hi


def engine_reference_outputs(
    model_bytes: bytes, inputs: np.ndarray, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """TFLM's int8 outputs [N, out] of the engine exported from ``model_bytes``, for int8 engine
    ``inputs`` [N, ...]: :func:`firmware_export.export.reference_outputs` (the one function
    for expected outputs) on the model's plan, read and planned here."""
    from firmware_export.export import reference_outputs
    from firmware_export.plan import build_plan
    from firmware_export.reader import load_graph

    plan = build_plan(load_graph(model_bytes))
    return reference_outputs(model_bytes, plan, inputs, progress)
