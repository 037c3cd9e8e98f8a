"""Flash and RAM of a linked image: ``arm-none-eabi-size`` totals, split by object file with
the linker map."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

from firmware_export.mcu.boards import Board
from firmware_export.mcu.errors import McuError
from firmware_export.mcu.toolchain import Toolchain, run_tool


@dataclasses.dataclass
class Image:
    """A linked ELF for a board, with its linker map."""

    board: Board
    elf: Path
    map_file: Path
    directory: Path


def categorize(obj: str, section: str = "") -> str:
    path = obj.replace("\\", "/")
    if path.startswith("lib/"):
        return "library"
    if path.startswith("harness/"):
        # The caller-owned buffers of the library API, allocated by the harness.
        if section == ".bss.scratch":
            return "scratch"
        if section in (".bss.input", ".bss.output"):
            return "io_buffers"
        return "harness"
    if "/mcu_vectors.o" in path:
        return "test_vectors"
    return "runtime"  # libgcc / newlib members


_MAP_INPUT = re.compile(r"^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
_MAP_INPUT_CONT = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
_MAP_OUTPUT = re.compile(r"^(\.\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)")
_MAP_FILL = re.compile(r"^ \*fill\*\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)")


@dataclasses.dataclass(frozen=True)
class MapSection:
    output: str
    name: str
    address: int
    size: int
    obj: str


def parse_map(path: Path) -> tuple[list[MapSection], dict[str, int]]:
    """Input sections (with their object files) and fill bytes per output section."""
    lines = path.read_text(errors="replace").splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("Linker script and memory"))
    except StopIteration:
        raise McuError(f"{path}: not a GNU ld map file") from None
    sections: list[MapSection] = []
    fill: dict[str, int] = Counter()
    output: str | None = None
    pending: str | None = None
    for ln in lines[start + 1 :]:
        m = _MAP_OUTPUT.match(ln)
        if m or (ln and not ln[0].isspace()):
            output = ln.split()[0] if ln.split() else None
            pending = None
            continue
        if output is None:
            continue
        m_fill = _MAP_FILL.match(ln)
        if m_fill:
            fill[output] += int(m_fill.group(2), 16)
            pending = None
            continue
        m_in = _MAP_INPUT.match(ln)
        if m_in and not m_in.group(4).startswith("0x"):
            sections.append(
                MapSection(
                    output,
                    m_in.group(1),
                    int(m_in.group(2), 16),
                    int(m_in.group(3), 16),
                    m_in.group(4).strip(),
                )
            )
            pending = None
            continue
        if pending is not None:
            m_cont = _MAP_INPUT_CONT.match(ln)
            if m_cont and not m_cont.group(3).startswith("0x"):
                sections.append(
                    MapSection(
                        output,
                        pending,
                        int(m_cont.group(1), 16),
                        int(m_cont.group(2), 16),
                        m_cont.group(3).strip(),
                    )
                )
            pending = None
            continue
        stripped = ln.strip()
        if ln.startswith(" ") and not ln.startswith("  ") and stripped and " " not in stripped:
            pending = stripped
    return sections, dict(fill)


FLASH_SECTIONS = (".text", ".rodata", ".ARM.exidx")


def _section_sizes(image: Image, tool: Toolchain) -> dict[str, int]:
    out = run_tool([tool.size, "-A", "-d", str(image.elf)], image.directory, "arm-none-eabi-size")
    sizes = {}
    for ln in out.splitlines():
        parts = ln.split()
        if (
            len(parts) == 3
            and parts[0].startswith(".")
            and parts[1].isdigit()
            and parts[0] in (*FLASH_SECTIONS, ".data", ".bss", ".stack")
        ):
            sizes[parts[0]] = int(parts[1])
    return sizes


def memory_report(image: Image, tool: Toolchain) -> dict[str, Any]:
    """Flash and RAM of an image: totals from ``arm-none-eabi-size``, split by object."""
    sizes = _section_sizes(image, tool)
    flash_total = sum(sizes.get(s, 0) for s in FLASH_SECTIONS) + sizes.get(".data", 0)
    data, bss, stack = sizes.get(".data", 0), sizes.get(".bss", 0), sizes.get(".stack", 0)
    sections, fill = parse_map(image.map_file)
    cats = ("library", "scratch", "io_buffers", "harness", "runtime", "test_vectors")
    split = {c: {"text": 0, "rodata": 0, "data": 0, "bss": 0} for c in cats}
    kind = {
        ".text": "text",
        ".rodata": "rodata",
        ".ARM.exidx": "rodata",
        ".data": "data",
        ".bss": "bss",
    }
    for s in sections:
        if s.output in kind and s.size:
            split[categorize(s.obj, s.name)][kind[s.output]] += s.size
    for c in cats:
        v = split[c]
        v["flash"] = v["text"] + v["rodata"] + v["data"]
        v["ram"] = v["data"] + v["bss"]
    fill_flash = sum(fill.get(s, 0) for s in (*FLASH_SECTIONS, ".data"))
    fill_ram = sum(fill.get(s, 0) for s in (".data", ".bss"))
    accounted_flash = sum(split[c]["flash"] for c in cats) + fill_flash
    accounted_ram = sum(split[c]["ram"] for c in cats) + fill_ram
    if accounted_flash != flash_total or accounted_ram != data + bss:
        raise McuError(
            f"{image.map_file.name}: the map accounts for {accounted_flash} B flash and "
            f"{accounted_ram} B RAM, arm-none-eabi-size says {flash_total} and {data + bss}"
        )
    board = image.board
    return {
        "sections": sizes,
        "flash": {
            "total": flash_total,
            "size": board.flash.length,
            "fill": fill_flash,
            **{c: split[c]["flash"] for c in cats},
        },
        "ram": {
            "static": data + bss,
            "stack_reserved": stack,
            "linked": data + bss + stack,
            "size": board.ram.length,
            "fill": fill_ram,
            **{c: split[c]["ram"] for c in cats},
        },
        "by_object": split,
    }
