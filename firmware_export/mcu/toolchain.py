"""The cross toolchain and QEMU: finding them, and running a tool with a one-line error."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from firmware_export.mcu.errors import McuError


@dataclasses.dataclass(frozen=True)
class Toolchain:
    gcc: str
    size: str
    nm: str
    qemu: str
    qemu_version: tuple[int, int]
    #: Disassembles the ELF for the cycle estimate (binutils, installed with the compiler).
    objdump: str = "arm-none-eabi-objdump"

    def single_step_flags(self) -> list[str]:
        """One guest instruction per translation block (the option was renamed in QEMU 8.1)."""
        if self.qemu_version >= (8, 1):
            return ["-accel", "tcg,one-insn-per-tb=on"]
        return ["-singlestep"]


INSTALL_HINT = (
    "install gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm "
    "(`make system-deps`, or apt-get install --no-install-recommends)"
)


def find_toolchain() -> Toolchain:
    """Locate the cross toolchain and QEMU on ``PATH``; one-line error when one is missing."""
    tools = {}
    for key, exe in (
        ("gcc", "arm-none-eabi-gcc"),
        ("size", "arm-none-eabi-size"),
        ("nm", "arm-none-eabi-nm"),
        ("objdump", "arm-none-eabi-objdump"),
        ("qemu", "qemu-system-arm"),
    ):
        path = shutil.which(exe)
        if path is None:
            raise McuError(f"{exe} not found on PATH; {INSTALL_HINT}")
        tools[key] = path
    try:
        out = subprocess.run(
            [tools["qemu"], "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise McuError(f"cannot run {tools['qemu']} ({exc}); {INSTALL_HINT}") from None
    m = re.search(r"version (\d+)\.(\d+)", out)
    if m is None:
        raise McuError(f"cannot read the version of {tools['qemu']}; {INSTALL_HINT}")
    return Toolchain(qemu_version=(int(m.group(1)), int(m.group(2))), **tools)


def run_tool(argv: Sequence[str], cwd: Path, what: str, timeout: float = 600) -> str:
    """Run a tool in ``cwd``; its stdout, or :class:`McuError` saying ``what`` failed and why."""
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise McuError(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise McuError(f"{what}: cannot run {argv[0]} ({exc})") from None
    if proc.returncode != 0:
        detail = failure_detail(proc.stderr + proc.stdout, proc.returncode)
        raise McuError(f"{what} failed: {detail}")
    return proc.stdout


#: The linker's own prefix (``/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld: ``).
_LD_PREFIX = re.compile(r"^\S*\bld(?:\.bfd)?(?:\.exe)?: ")


def failure_detail(output: str, returncode: int) -> str:
    """Why a tool failed, in one line: its error lines (at most 3). For a link, collect2 says
    only ``ld returned 1 exit status``: the linker's own lines, which give the reason
    (``region `RAM' overflowed by 123 bytes``, ``undefined reference to `f'``), are shown instead.
    """
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if any("collect2" in ln and "ld returned" in ln for ln in lines):
        reasons = [_LD_PREFIX.sub("ld: ", ln.strip()) for ln in lines if "ld returned" not in ln]
        errors = [r for r in reasons if "warning:" not in r] or reasons or lines
    else:
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
    return "; ".join(errors[:3]) if errors else f"exit code {returncode}"
