"""The board packages: ``firmware_export/boards/<board>/`` (``board.json``: core, compiler
flags, QEMU machine; ``board.ld``: the chip's real memory map), the one list of boards."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from firmware_export.mcu.errors import McuError, McuUsageError

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"
COMMON_DIR = BOARDS_DIR / "common"


@dataclasses.dataclass(frozen=True)
class Region:
    origin: int
    length: int


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    core: str
    chip: str
    qemu_machine: str
    cflags: tuple[str, ...]
    dsp: bool
    flash: Region
    ram: Region
    stack_size: int
    directory: Path


def board_names() -> list[str]:
    """The one list of boards: every board package shipped in ``firmware_export/boards``, in
    the order of their ``"order"`` in ``board.json`` (the order ``--board all`` runs them)."""
    found = []
    for path in BOARDS_DIR.glob("*/board.json"):
        order = json.loads(path.read_text()).get("order")
        found.append((order if isinstance(order, int) else 1 << 30, path.parent.name))
    return [name for _, name in sorted(found)]


_SIZE_RE = re.compile(r"^(0x[0-9a-fA-F]+|\d+)\s*([KM]?)$")


def _ld_number(text: str) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise McuError(f"cannot read the linker-script number {text!r}")
    value = int(m.group(1), 0)
    return value * {"": 1, "K": 1024, "M": 1024 * 1024}[m.group(2)]


def _parse_board_ld(path: Path) -> tuple[dict[str, Region], int]:
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    regions = {
        m.group(1): Region(_ld_number(m.group(2)), _ld_number(m.group(3)))
        for m in re.finditer(
            r"(\w+)\s*\([^)]*\)\s*:\s*ORIGIN\s*=\s*([0-9A-Fa-fx]+)\s*,\s*LENGTH\s*=\s*(\w+)", text
        )
    }
    stack = re.search(r"__stack_size\s*=.*?:\s*([0-9A-Fa-fx]+[KM]?)\s*;", text)
    if "FLASH" not in regions or "RAM" not in regions or stack is None:
        raise McuError(f"{path}: the linker script lacks the FLASH/RAM regions or __stack_size")
    return regions, _ld_number(stack.group(1))


def load_board(name: str) -> Board:
    """The board package ``name`` (raises :class:`McuUsageError` for an unknown name)."""
    directory = BOARDS_DIR / name
    if not (directory / "board.json").is_file():
        raise McuUsageError(
            f"unknown board {name!r}; choose one of {', '.join(sorted(board_names()))} or all"
        )
    meta = json.loads((directory / "board.json").read_text())
    regions, stack = _parse_board_ld(directory / "board.ld")
    return Board(
        name=name,
        core=meta["core"],
        chip=meta["chip"],
        qemu_machine=meta["qemu_machine"],
        cflags=tuple(meta["cflags"]),
        dsp=bool(meta["dsp"]),
        flash=regions["FLASH"],
        ram=regions["RAM"],
        stack_size=stack,
        directory=directory,
    )
