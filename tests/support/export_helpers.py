"""Shared helpers for the export-c tests: compile and run the generated engine, run TFLM.

Results that cost seconds (TFLM over 10,000 images, compiled binaries) are cached per process
by model content, so several test modules can share them.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_export import hostbuild
from firmware_export.cflags import C_STRICT
from tests.support import C_DIR

HARNESS = C_DIR / "harness.c"
STRICT = list(C_STRICT)
SANITIZE = list(hostbuild.SANITIZE)

_TFLM_CACHE: dict[tuple[str, str, tuple[int, ...]], dict[int, np.ndarray]] = {}


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


#: The Cortex-M toolchain and emulator (``make system-deps``).
MCU_TOOLS = (
    "arm-none-eabi-gcc",
    "arm-none-eabi-size",
    "arm-none-eabi-nm",
    "arm-none-eabi-objdump",
    "qemu-system-arm",
)


def _missing(tools: tuple[str, ...]) -> list[str]:
    # Under CI (.ci/run installs every tool) a missing tool must fail the test, not skip it.
    return [] if os.environ.get("CI") else [t for t in tools if not have(t)]


def requires(*tools: str) -> pytest.MarkDecorator:
    """Skip (outside CI) when a tool is not on PATH."""
    missing = _missing(tools)
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def skip_unless(*tools: str) -> None:
    """Inside a test: skip (outside CI) when a tool is not on PATH."""
    missing = _missing(tools)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (`make system-deps` installs the Cortex-M ones)")


def need_toolchain(*extra: str) -> Any:
    """The Cortex-M toolchain (:class:`firmware_export.mcu.Toolchain`), or skip outside CI
    when it (or one of the ``extra`` tools) is missing."""
    from firmware_export import mcu

    skip_unless(*MCU_TOOLS, *extra)
    return mcu.find_toolchain()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compile_harness(
    standalone: Path,
    binary: Path,
    flags: list[str],
    prefix: str = "lenet",
    cc: str = "gcc",
    trace: bool = False,
    harness: Path = HARNESS,
) -> Path:
    """:func:`firmware_export.hostbuild.compile_harness` with the trace harness by default; a
    failed build fails the test with the compiler's output."""
    try:
        return hostbuild.compile_harness(standalone, binary, flags, harness, prefix, cc, trace)
    except hostbuild.HostBuildError as exc:
        raise AssertionError(str(exc)) from None


class EngineRun:
    """The harness running in the background on a file of inputs (see :func:`start_engine`)."""

    def __init__(
        self, binary: Path, inputs: np.ndarray, output_size: int, workdir: Path, trace: bool = False
    ) -> None:
        self.n = len(inputs)
        self.output_size = output_size
        self.src = workdir / f"{binary.name}.in"
        self.dst = workdir / f"{binary.name}.out"
        self.trace = workdir / f"{binary.name}.trace" if trace else None
        np.ascontiguousarray(inputs, dtype=np.int8).tofile(self.src)
        args = [str(binary), str(self.src), str(self.dst)]
        if self.trace is not None:
            args.append(str(self.trace))
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._result: tuple[np.ndarray, int] | None = None

    def result(self) -> tuple[np.ndarray, int]:
        """Wait; return (outputs [N, output_size], scratch size of the build)."""
        if self._result is None:
            stdout, stderr = self.proc.communicate(timeout=1800)
            if self.proc.returncode != 0:
                raise AssertionError(f"engine failed ({self.proc.returncode}):\n{stderr[-3000:]}")
            scratch, n = (int(v) for v in stdout.split())
            assert n == self.n
            out = np.fromfile(self.dst, dtype=np.int8).reshape(self.n, self.output_size)
            self._result = (out, scratch)
        return self._result

    def layers(self, sizes: list[int]) -> list[np.ndarray]:
        """Per-layer outputs from the trace: one [N, size] array per engine step."""
        self.result()
        assert self.trace is not None
        raw = np.fromfile(self.trace, dtype=np.int8).reshape(self.n, sum(sizes))
        bounds = np.cumsum([0, *sizes])
        return [raw[:, bounds[i] : bounds[i + 1]] for i in range(len(sizes))]


def run_engine(
    binary: Path, inputs: np.ndarray, output_size: int, workdir: Path
) -> tuple[np.ndarray, int]:
    """Run the harness on int8 ``inputs`` [N, ...]; return (outputs [N, output_size], scratch
    size the binary was built with)."""
    return EngineRun(binary, inputs, output_size, workdir).result()


def tflm_tensors(
    model_bytes: bytes, inputs: np.ndarray, tensors: tuple[int, ...], key: str = ""
) -> dict[int, np.ndarray]:
    """TFLM's values of ``tensors`` (flattened, int8) for every input, in one pass.

    Uses the interpreter's preserve-all-tensors mode to read intermediate tensors.
    """
    cache_key = (
        sha(model_bytes) + sha(np.ascontiguousarray(inputs).tobytes()),
        key,
        tuple(tensors),
    )
    if cache_key in _TFLM_CACHE:
        return _TFLM_CACHE[cache_key]
    from tflite_micro.python.tflite_micro import runtime as rt

    from firmware_export.sysutil import quiet_stderr

    with quiet_stderr():
        it = rt.Interpreter.from_bytes(
            model_bytes,
            arena_size=max(256 * 1024, 8 * len(model_bytes)),
            intrepreter_config=rt.InterpreterConfig.kPreserveAllTensors,
        )
    details = it.get_input_details(0)
    out: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
    for x in inputs:
        it.set_input(np.asarray(x, dtype=details["dtype"]).reshape(details["shape"]), 0)
        with quiet_stderr():
            it.invoke()
        for t in tensors:
            out[t].append(np.array(it.GetTensor(t, 0)["tensor_data"]).ravel())
    result = {t: np.stack(v) for t, v in out.items()}
    _TFLM_CACHE[cache_key] = result
    return result


#: Trace markers at made-up addresses, for synthetic traces (the harness's symbols, in order).
TRACE_MARKERS = {0x100: "mcu_mark_quantize", 0x110: "mcu_mark_infer", 0x120: "mcu_mark_done"}


def qemu_trace(pcs: list[int]) -> io.BytesIO:
    """A QEMU ``-d exec,nochain -singlestep`` log executing ``pcs`` in order."""
    lines = [
        f"Trace 0: 0x7f00{i:06x} [00800408/{pc:08x}/00000110/ff000201] f\n"
        for i, pc in enumerate(pcs)
    ]
    return io.BytesIO("".join(lines).encode())
