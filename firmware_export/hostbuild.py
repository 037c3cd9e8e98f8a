"""Build an export's standalone engine with a C harness for the host (gcc or clang).

The one compile path for the host harnesses: the tests' trace harness, the engine fuzzer's
sanitizer harness and the quantize/API checks all link ``standalone/*.c`` with a harness
that takes the engine's names from ``-DENGINE_*`` defines, so one harness serves any prefix.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from firmware_export.cflags import C_STD
from firmware_export.errors import FirmwareExportError

#: AddressSanitizer and UndefinedBehaviorSanitizer, the first finding fatal.
SANITIZE = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
)


class HostBuildError(FirmwareExportError):
    """The harness did not compile or link; the message holds the command and its output."""

    exit_code = 1


def harness_defines(prefix: str, trace: bool = False) -> list[str]:
    """The ``-D`` flags that name the engine's header, sizes and entry points for a harness."""
    p = prefix.upper()
    defines = [
        f'-DENGINE_HEADER="{prefix}.h"',
        f"-DENGINE_INPUT_SIZE={p}_INPUT_SIZE",
        f"-DENGINE_OUTPUT_SIZE={p}_OUTPUT_SIZE",
        f"-DENGINE_SCRATCH_SIZE={p}_SCRATCH_SIZE",
        f"-DENGINE_INFER={prefix}_infer",
    ]
    if trace:
        defines += [f"-D{p}_TRACE", f"-DENGINE_TRACE_FN={prefix}_trace"]
    return defines


def compile_harness(
    standalone: Path,
    binary: Path,
    flags: Sequence[str],
    harness: Path,
    prefix: str = "lenet",
    cc: str = "gcc",
    trace: bool = False,
) -> Path:
    """Compile every ``standalone/*.c`` with ``harness`` into ``binary``. With ``trace`` the
    engine's debug hook is compiled in and the harness implements it."""
    sources = sorted(str(p) for p in Path(standalone).glob("*.c"))
    cmd = [
        cc,
        *flags,
        C_STD,
        "-I",
        str(standalone),
        *harness_defines(prefix, trace),
        *sources,
        str(harness),
        "-o",
        str(binary),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HostBuildError(f"compile failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return binary
