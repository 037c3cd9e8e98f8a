"""Running an image under ``qemu-system-arm`` with semihosting, and reading its result line."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.mcu.boards import Board
from firmware_export.mcu.errors import McuError
from firmware_export.mcu.memory import Image
from firmware_export.mcu.toolchain import INSTALL_HINT, Toolchain

PIXELS = 28 * 28  # bytes of one raw MNIST image, as the harness reads them
#: Exit codes of the image (boards/common/semihost.h).
IMAGE_EXIT = {
    0: "ok",
    1: "output mismatch",
    2: "the library returned a non-OK status",
    3: "a semihosting file call failed",
    4: "stack overflow (the painted stack was used to its last word)",
    5: "CPU fault: an invalid access or instruction, or a stack overflow",
}


def qemu_argv(tool: Toolchain, board: Board, elf: Path, args: Sequence[str]) -> list[str]:
    """The QEMU command line: semihosting console on stdio, no monitor, no serial."""
    config = "enable=on,target=native,chardev=shc" + "".join(f",arg={a}" for a in args)
    return [
        tool.qemu,
        "-M",
        board.qemu_machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-chardev",
        "stdio,id=shc",
        "-semihosting-config",
        config,
        "-kernel",
        str(elf),
    ]


@dataclasses.dataclass
class RunResult:
    returncode: int
    values: dict[str, int]
    stdout: str
    seconds: float


_RESULT_RE = re.compile(r"^MCU-RESULT((?: \w+=-?\d+)+)\s*$", re.M)


def parse_result(stdout: str) -> dict[str, int]:
    m = _RESULT_RE.search(stdout)
    if m is None:
        return {}
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def check_exit(board: Board, rc: int, values: dict[str, int], stdout: str, stderr: str) -> None:
    if rc in (0, 1) and values:
        return  # a complete run: mismatches are counted by the caller
    extra = [
        ln.strip()
        for ln in (stdout + "\n" + stderr).splitlines()
        if ln.strip() and not ln.startswith("Trace ") and not ln.startswith("MCU-RESULT")
    ]
    lockup = next((ln for ln in extra if "Lockup" in ln), None)
    if lockup is not None:
        detail = (
            f"the core locked up ({lockup}), a fault while handling a fault, typically a "
            "stack overflow: try a larger --stack-size"
        )
    elif not values and rc in (0, 1):
        detail = (
            f"exit code {rc} without its result line; the stack may have overflowed "
            "(try a larger --stack-size)"
        )
    else:
        detail = IMAGE_EXIT.get(rc, f"QEMU exit code {rc}")
        messages = [ln for ln in extra if ln.startswith(("MCU-", "qemu"))] or extra
        if messages:
            detail += f": {'; '.join(messages[-3:])}"
    raise McuError(f"{board.name}: the image did not complete ({detail})")


def run_image(
    tool: Toolchain, image: Image, args: Sequence[str], timeout: float, cwd: Path | None = None
) -> RunResult:
    """Run ``image`` under QEMU with the semihosting command line ``args``."""
    argv = qemu_argv(tool, image.board, image.elf, args)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd or image.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise McuError(
            f"{image.board.name}: QEMU did not finish within {timeout:.0f} s (raise --timeout)"
        ) from None
    except OSError as exc:
        raise McuError(f"cannot run {tool.qemu} ({exc}); {INSTALL_HINT}") from None
    seconds = time.monotonic() - t0
    values = parse_result(proc.stdout)
    check_exit(image.board, proc.returncode, values, proc.stdout, proc.stderr)
    return RunResult(proc.returncode, values, proc.stdout, seconds)


def compare_outputs(got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    """Byte-for-byte comparison of int8 outputs [N, out]."""
    diff = got != want
    bad_rows = np.flatnonzero(diff.any(axis=1))
    return {
        "images": len(want),
        "mismatched_images": len(bad_rows),
        "mismatched_bytes": int(diff.sum()),
        "first_mismatch": int(bad_rows[0]) if len(bad_rows) else -1,
    }


def run_stream(
    tool: Toolchain,
    image: Image,
    raw: np.ndarray,
    output_size: int,
    timeout: float,
    run_dir: Path,
    extra_args: Sequence[str] = (),
) -> tuple[RunResult, np.ndarray]:
    """Stream ``raw`` images through the core via semihosting files; return its outputs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, PIXELS)
    (run_dir / "mcu_in.bin").write_bytes(raw.tobytes())
    out_path = run_dir / "mcu_out.bin"
    out_path.unlink(missing_ok=True)
    result = run_image(tool, image, ["stream", *extra_args], timeout, cwd=run_dir)
    data = out_path.read_bytes() if out_path.is_file() else b""
    if len(data) != len(raw) * output_size or result.values.get("images") != len(raw):
        raise McuError(
            f"{image.board.name}: the streaming run wrote {len(data)} bytes for "
            f"{len(raw)} images ({output_size} bytes each expected)"
        )
    return result, np.frombuffer(data, dtype=np.int8).reshape(len(raw), output_size)
