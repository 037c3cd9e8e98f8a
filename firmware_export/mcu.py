"""Run the exported standalone C library on emulated Cortex-M boards (``lenet-edge mcu-test``).

The board packages in ``firmware_export/boards/<board>/`` (``board.json``: core, compiler flags,
QEMU machine; ``board.ld``: the chip's real memory map) and the shared harness in
``boards/common/`` are built with ``arm-none-eabi-gcc`` together with ``DIR/standalone/`` into a
bare-metal ELF, which runs under ``qemu-system-arm`` with semihosting:

* embedded vectors: raw 28x28 test images and the expected int8 outputs are linked into flash
  (as many as fit); the core quantizes with ``<prefix>_quantize_mnist``, infers and compares
  every output byte itself;
* streaming: the core reads raw images from a host file through semihosting and writes its
  outputs back; the host compares every byte.

Reports: flash and RAM (``arm-none-eabi-size``, split by object into library, harness, runtime
and test vectors), the measured stack high-water mark, peak RAM, and the exact number of
executed instructions per inference, total and per function (a QEMU ``-d exec,nochain``
single-step trace mapped to the ELF's symbols).

This module never imports TensorFlow: expected outputs are computed by the caller.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.errors import FirmwareExportError

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
COMMON_DIR = BOARDS_DIR / "common"
PIXELS = 28 * 28
#: Compiler flags for every C file (the generated library must pass these; issue 4).
C_FLAGS = (
    "-std=c99",
    "-O2",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Wconversion",
    "-Wshadow",
)
HARNESS_SOURCES = ("startup.S", "semihost.c", "harness.c")
MARKERS = ("mcu_mark_quantize", "mcu_mark_infer", "mcu_mark_done")
#: Exit codes of the image (boards/common/semihost.h).
IMAGE_EXIT = {
    0: "ok",
    1: "output mismatch",
    2: "the library returned a non-OK status",
    3: "a semihosting file call failed",
    4: "stack overflow (the painted stack was used to its last word)",
    5: "CPU fault: an invalid access or instruction, or a stack overflow",
}
DEFAULT_TIMEOUT = 900.0
FLASH_SLACK = 8  # alignment padding allowance when filling the flash with test vectors


class McuError(FirmwareExportError):
    """A build, run or check on the emulated board failed (exit 1)."""


class McuUsageError(FirmwareExportError):
    """A bad argument: unknown board, too many images, ... (exit 2)."""

    exit_code = 2


# --------------------------------------------------------------------------------------------
# Boards


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
    """Every board package shipped in ``firmware_export/boards``."""
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


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
            f"unknown board {name!r}; choose one of {', '.join(board_names())} or all"
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


# --------------------------------------------------------------------------------------------
# Toolchain


@dataclasses.dataclass(frozen=True)
class Toolchain:
    gcc: str
    size: str
    nm: str
    qemu: str
    qemu_version: tuple[int, int]

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


def _run_tool(argv: Sequence[str], cwd: Path, what: str, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise McuError(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise McuError(f"{what}: cannot run {argv[0]} ({exc})") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        detail = "; ".join(errors[:3]) if errors else f"exit code {proc.returncode}"
        raise McuError(f"{what} failed: {detail}")
    return proc.stdout


# --------------------------------------------------------------------------------------------
# The export-c output


@dataclasses.dataclass(frozen=True)
class Export:
    directory: Path
    prefix: str
    sources: tuple[Path, ...]
    model_path: Path
    meta: dict[str, Any]

    @property
    def header(self) -> Path:
        return self.directory / "standalone" / f"{self.prefix}.h"

    @property
    def macro_prefix(self) -> str:
        return self.prefix.upper()

    def header_int(self, name: str) -> int:
        """The integer value of ``#define <PREFIX>_<name>`` in the public header."""
        text = self.header.read_text()
        m = re.search(
            rf"#\s*define\s+{re.escape(self.macro_prefix)}_{name}\s+\(?\s*(-?\d+)[uUlL]*\s*\)?",
            text,
        )
        if m is None:
            raise McuError(f"{self.header}: no integer #define {self.macro_prefix}_{name}")
        return int(m.group(1))

    def macs(self) -> int | None:
        """Multiply-accumulates per inference from export.json (the engine's count)."""
        return macs_from_export_json(self.meta)


def macs_from_export_json(meta: dict[str, Any]) -> int | None:
    """Total MACs per inference: a top-level total if present, else the sum over the layers."""
    for key in ("macs_total", "total_macs", "macs"):
        value = meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    layers = meta.get("layers")
    if isinstance(layers, list):
        found = [layer.get("macs") for layer in layers if isinstance(layer, dict)]
        ints = [v for v in found if isinstance(v, int) and not isinstance(v, bool)]
        if ints:
            return sum(ints)
    return None


def read_export(directory: str | os.PathLike[str]) -> Export:
    """Check that ``directory`` is an export-c output and describe it."""
    d = Path(directory).resolve()
    hint = "give the --out directory of `lenet-edge export-c`"
    if not d.is_dir():
        raise McuError(f"{d} is not a directory; {hint}")
    meta_path = d / "export.json"
    if not meta_path.is_file():
        raise McuError(f"{d} is not an export-c output (no export.json); {hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise McuError(f"{meta_path}: unreadable ({exc}); {hint}") from None
    prefix = meta.get("prefix") if isinstance(meta, dict) else None
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_]\w*", prefix):
        raise McuError(f'{meta_path} has no valid "prefix"; {hint}')
    standalone = d / "standalone"
    missing = [p for p in (standalone / f"{prefix}.h", d / "model.tflite") if not p.is_file()]
    if missing:
        raise McuError(
            f"{d} is not a complete export-c output (missing "
            f"{', '.join(str(p.relative_to(d)) for p in missing)}); {hint}"
        )
    sources = tuple(sorted(standalone.glob("*.c")))
    if not sources:
        raise McuError(f"{standalone} holds no C sources; {hint}")
    return Export(d, prefix, sources, d / "model.tflite", meta)


# --------------------------------------------------------------------------------------------
# Building


@dataclasses.dataclass
class Image:
    board: Board
    elf: Path
    map_file: Path
    directory: Path


def _check_newlib(tool: Toolchain, board: Board, cwd: Path) -> None:
    out = _run_tool(
        [tool.gcc, *board.cflags, "-print-file-name=libc.a"],
        cwd,
        "arm-none-eabi-gcc -print-file-name",
    ).strip()
    if not os.path.isabs(out) or not os.path.isfile(out):
        raise McuError(f"newlib (libc.a) for {board.core} not found; {INSTALL_HINT}")


class Builder:
    """Compiles the library and the harness for one board once; links images with N vectors."""

    def __init__(
        self,
        export: Export,
        board: Board,
        tool: Toolchain,
        build_dir: Path,
        *,
        dsp: bool = True,
        stack_size: int | None = None,
        extra_cflags: Sequence[str] = (),
    ) -> None:
        self.export = export
        self.board = board
        self.tool = tool
        self.dir = build_dir.resolve()
        self.dsp = dsp and board.dsp
        self.stack_size = stack_size
        self.output_size = export.header_int("OUTPUT_SIZE")
        self.input_size = export.header_int("INPUT_SIZE")
        self.scratch_size = export.header_int("SCRATCH_SIZE")
        extra = [] if dsp else [f"-D{export.macro_prefix}_NO_DSP", "-U__ARM_FEATURE_DSP"]
        self.cflags = (*board.cflags, *C_FLAGS, *extra, *extra_cflags)
        self._objects: list[str] | None = None

    def _compile(self) -> list[str]:
        if self._objects is not None:
            return self._objects
        d = self.dir
        for sub in ("lib", "harness", "gen"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        _check_newlib(self.tool, self.board, d)
        p = self.export.macro_prefix
        (d / "gen" / "mcu_config.h").write_text(
            "/* Generated by lenet-edge mcu-test: binds the harness to the library. */\n"
            "#ifndef MCU_CONFIG_H\n#define MCU_CONFIG_H\n"
            f'#include "{self.export.prefix}.h"\n'
            f"#define MCU_INPUT_SIZE {p}_INPUT_SIZE\n"
            f"#define MCU_OUTPUT_SIZE {p}_OUTPUT_SIZE\n"
            f"#define MCU_SCRATCH_SIZE {p}_SCRATCH_SIZE\n"
            f"#define MCU_STATUS_OK {p}_OK\n"
            f"#define MCU_INFER {self.export.prefix}_infer\n"
            f"#define MCU_QUANTIZE {self.export.prefix}_quantize_mnist\n"
            "#endif\n"
        )
        includes = [
            "-I",
            str(self.export.directory / "standalone"),
            "-I",
            "gen",
            "-I",
            str(COMMON_DIR),
        ]
        objects = []
        for src in self.export.sources:
            obj = f"lib/{src.stem}.o"
            _run_tool(
                [self.tool.gcc, *self.cflags, *includes, "-c", str(src), "-o", obj],
                d,
                f"compiling {src.name} for {self.board.name}",
            )
            objects.append(obj)
        for name in HARNESS_SOURCES:
            obj = f"harness/{Path(name).stem}.o"
            _run_tool(
                [self.tool.gcc, *self.cflags, *includes, "-c", str(COMMON_DIR / name), "-o", obj],
                d,
                f"compiling the harness ({name}) for {self.board.name}",
            )
            objects.append(obj)
        self._objects = objects
        return objects

    def link(self, raw: np.ndarray, expected: np.ndarray, name: str = "image") -> Image:
        """Link an image holding ``raw`` (uint8 [N, 28, 28]) and ``expected`` (int8 [N, out])."""
        objects = self._compile()
        raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, PIXELS)
        expected = np.ascontiguousarray(expected, dtype=np.int8).reshape(-1, self.output_size)
        if len(raw) != len(expected):
            raise McuError("internal: test vectors and expected outputs differ in number")
        vdir = self.dir / f"vectors-{name}"
        vdir.mkdir(parents=True, exist_ok=True)
        (vdir / "images.bin").write_bytes(raw.tobytes())
        (vdir / "expected.bin").write_bytes(expected.tobytes())
        (vdir / "mcu_vectors.S").write_text(
            "/* Generated by lenet-edge mcu-test: raw 28x28 test images, expected outputs. */\n"
            '    .section .rodata.mcu_vectors, "a", %progbits\n'
            "    .align 2\n"
            "    .global mcu_vec_count\n"
            f"mcu_vec_count:\n    .word {len(raw)}\n"
            "    .global mcu_vec_images\n"
            'mcu_vec_images:\n    .incbin "images.bin"\n'
            "    .global mcu_vec_expected\n"
            'mcu_vec_expected:\n    .incbin "expected.bin"\n'
        )
        vobj = f"vectors-{name}/mcu_vectors.o"
        _run_tool(
            [
                self.tool.gcc,
                *self.board.cflags,
                "-c",
                f"-Wa,-Ivectors-{name}",
                f"vectors-{name}/mcu_vectors.S",
                "-o",
                vobj,
            ],
            self.dir,
            f"assembling the test vectors for {self.board.name}",
        )
        elf = f"{name}.elf"
        mapf = f"{name}.map"
        ld = [
            self.tool.gcc,
            *self.board.cflags,
            "-nostdlib",
            "-nostartfiles",
            "-Wl,--gc-sections",
            "-L",
            str(COMMON_DIR),
            "-T",
            str(self.board.directory / "board.ld"),
            f"-Wl,-Map={mapf}",
            *objects,
            vobj,
            "-lc",
            "-lgcc",
            "-o",
            elf,
        ]
        if self.stack_size is not None:
            ld.insert(1, f"-Wl,--defsym=__stack_size={self.stack_size}")
        _run_tool(ld, self.dir, f"linking for {self.board.name} ({len(raw)} test vectors)")
        return Image(self.board, self.dir / elf, self.dir / mapf, self.dir)

    def vector_capacity(self, limit: int) -> int:
        """How many test vectors fit the flash next to the library and harness (at most limit)."""
        empty = self.link(
            np.zeros((0, PIXELS), np.uint8), np.zeros((0, self.output_size), np.int8), name="probe"
        )
        used = memory_report(empty, self.tool)["flash"]["total"]
        free = self.board.flash.length - used - FLASH_SLACK
        return max(0, min(limit, free // (PIXELS + self.output_size)))


# --------------------------------------------------------------------------------------------
# Sizes


def _categorize(obj: str, section: str = "") -> str:
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
    out = _run_tool([tool.size, "-A", "-d", str(image.elf)], image.directory, "arm-none-eabi-size")
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
            split[_categorize(s.obj, s.name)][kind[s.output]] += s.size
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


# --------------------------------------------------------------------------------------------
# Running


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


def _parse_result(stdout: str) -> dict[str, int]:
    m = _RESULT_RE.search(stdout)
    if m is None:
        return {}
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def _check_exit(board: Board, rc: int, values: dict[str, int], stdout: str, stderr: str) -> None:
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
    values = _parse_result(proc.stdout)
    _check_exit(image.board, proc.returncode, values, proc.stdout, proc.stderr)
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


# --------------------------------------------------------------------------------------------
# Instruction counting


@dataclasses.dataclass(frozen=True)
class Symbol:
    address: int
    size: int
    name: str


def function_symbols(tool: Toolchain, elf: Path) -> list[Symbol]:
    """Function symbols with sizes (``arm-none-eabi-nm -S``), sorted by address."""
    out = _run_tool([tool.nm, "-S", "--defined-only", str(elf)], elf.parent, "arm-none-eabi-nm")
    best: dict[int, tuple[bool, str, Symbol]] = {}
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) != 4 or parts[2] not in ("T", "t", "W", "w"):
            continue
        sym = Symbol(int(parts[0], 16) & ~1, int(parts[1], 16), parts[3])
        # Several names at one address (weak aliases of a handler): prefer a strong symbol,
        # then the first name in sort order, so the choice does not depend on nm's order.
        key = (parts[2] in ("W", "w"), sym.name, sym)
        old = best.get(sym.address)
        if old is None or key[:2] < old[:2]:
            best[sym.address] = key
    return sorted((v[2] for v in best.values()), key=lambda s: s.address)


class _SymbolTable:
    def __init__(self, symbols: list[Symbol], sections: list[MapSection]) -> None:
        self.symbols = symbols
        self.starts = [s.address for s in symbols]
        text = sorted(
            (s for s in sections if s.output == ".text" and s.size), key=lambda s: s.address
        )
        self.sec_starts = [s.address for s in text]
        self.sections = text

    def name(self, pc: int) -> str:
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0:
            s = self.symbols[i]
            if pc < s.address + max(s.size, 2):
                return s.name
        return f"0x{pc:08x}"

    def category(self, pc: int) -> str:
        i = bisect.bisect_right(self.sec_starts, pc) - 1
        if i >= 0 and pc < self.sections[i].address + self.sections[i].size:
            return _categorize(self.sections[i].obj)
        return "unknown"


_TRACE_PC = re.compile(rb"\[[0-9a-fA-F]+/([0-9a-fA-F]+)/")


@dataclasses.dataclass
class TracedImage:
    """The executed PCs of one image: PC -> number of executions."""

    quantize: Counter[int]
    infer: Counter[int]
    #: One counter per call made by the root function (``<prefix>_infer``): the layers.
    calls: list[Counter[int]]


def _trace_regions(
    stream: Any,
    markers: dict[int, str],
    root: tuple[int, int] | None = None,
    other_lines: list[str] | None = None,
) -> list[TracedImage]:
    """Split the executed PCs of a ``-d exec`` trace into per-image regions.

    ``markers`` maps the entry addresses of the harness's marker functions to their names:
    ``mcu_mark_quantize`` opens an image and its quantize region, ``mcu_mark_infer`` the infer
    region, ``mcu_mark_done`` closes it. Inside the infer region, everything executed between
    two instructions of the ``root`` function (address range ``[start, end)``) is one call,
    with whatever that callee calls in turn. The markers' own instructions and the harness
    code around the calls are included; the caller filters them out by object file.
    Lines that are not trace lines go to ``other_lines`` (QEMU's own messages).
    """
    images: list[dict[str, Any]] = []
    current: Counter[bytes] | None = None
    call: Counter[bytes] | None = None
    rest = b""
    tags: dict[bytes, str] = {}
    while True:
        chunk = stream.read1(1 << 22) if hasattr(stream, "read1") else stream.read(1 << 22)
        if not chunk:
            break
        chunk = rest + chunk
        cut = chunk.rfind(b"\n") + 1
        rest = chunk[cut:]
        pcs = _TRACE_PC.findall(chunk, 0, cut)
        if other_lines is not None and chunk.count(b"\n", 0, cut) != len(pcs):
            other_lines.extend(
                ln.decode(errors="replace")
                for ln in chunk[:cut].splitlines()
                if ln.strip() and not _TRACE_PC.search(ln)
            )
        if pcs and not tags:
            # QEMU prints the PC zero-padded to its own width (8 digits in 7.2, 16 later).
            width = len(pcs[0])
            if root is not None:
                tags = {f"{a:0{width}x}".encode(): "root" for a in range(root[0], root[1], 2)}
            tags.update({f"{a:0{width}x}".encode(): name for a, name in markers.items()})
        start = 0
        hits = [i for i, pc in enumerate(pcs) if pc in tags]
        for i in [*hits, len(pcs)]:
            if i > start:
                segment = pcs[start:i]
                if current is not None:
                    current.update(segment)
                if call is not None:
                    call.update(segment)
            if i == len(pcs):
                break
            pc = pcs[i]
            tag = tags[pc]
            call = None
            if tag == "mcu_mark_quantize":
                images.append({"quantize": Counter(), "infer": Counter(), "calls": []})
                current = images[-1]["quantize"]
            elif tag == "mcu_mark_infer" and images:
                current = images[-1]["infer"]
            elif tag != "root":
                current = None
            if current is not None:
                current[pc] += 1
            if tag == "root" and images and current is images[-1]["infer"]:
                call = Counter()
                images[-1]["calls"].append(call)
            start = i + 1

    def ints(c: Counter[bytes]) -> Counter[int]:
        return Counter({int(pc, 16): n for pc, n in c.items()})

    return [
        TracedImage(ints(img["quantize"]), ints(img["infer"]), [ints(c) for c in img["calls"] if c])
        for img in images
    ]


def count_instructions(
    tool: Toolchain,
    image: Image,
    raw: np.ndarray,
    expected: np.ndarray,
    timeout: float,
    run_dir: Path,
    root_function: str = "lenet_infer",
) -> dict[str, Any]:
    """Exact executed-instruction counts for each image in ``raw`` (streamed), per function
    and per call made by ``root_function`` (the layers).

    QEMU runs one guest instruction per translation block without chaining and logs every
    block it executes (``-d exec,nochain``); the PCs between the harness markers are mapped
    to the ELF's function symbols. The harness's own instructions (the call sequence) are
    excluded; the library and the runtime helpers it calls (libgcc, newlib) are counted.
    """
    output_size = expected.shape[1]
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, PIXELS)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "mcu_in.bin").write_bytes(raw.tobytes())
    out_path = run_dir / "mcu_out.bin"
    out_path.unlink(missing_ok=True)
    symbols = function_symbols(tool, image.elf)
    sections, _ = parse_map(image.map_file)
    table = _SymbolTable(symbols, sections)
    markers = {s.address: s.name for s in symbols if s.name in MARKERS}
    if set(markers.values()) != set(MARKERS):
        raise McuError(f"{image.elf.name}: the harness markers are missing from the symbols")
    root = next(((s.address, s.address + s.size) for s in symbols if s.name == root_function), None)
    argv = [
        *qemu_argv(tool, image.board, image.elf, ["stream"]),
        "-d",
        "exec,nochain",
        *tool.single_step_flags(),
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise McuError(f"cannot run {tool.qemu} ({exc}); {INSTALL_HINT}") from None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    stdout_chunks: list[bytes] = []
    other: list[str] = []
    reader = threading.Thread(
        target=lambda: stdout_chunks.append(proc.stdout.read()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        regions = _trace_regions(proc.stderr, markers, root, other)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    seconds = time.monotonic() - t0
    if timed_out.is_set():
        raise McuError(
            f"{image.board.name}: the traced QEMU run did not finish within "
            f"{timeout:.0f} s (raise --timeout)"
        )
    stdout = b"".join(stdout_chunks).decode(errors="replace")
    values = _parse_result(stdout)
    _check_exit(image.board, proc.returncode, values, stdout, "\n".join(other[-20:]))
    data = out_path.read_bytes() if out_path.is_file() else b""
    if len(data) != raw.shape[0] * output_size:
        raise McuError(f"{image.board.name}: the traced run wrote {len(data)} output bytes")
    got = np.frombuffer(data, dtype=np.int8).reshape(-1, output_size)
    check = compare_outputs(got, expected)
    if check["mismatched_images"]:
        raise McuError(
            f"{image.board.name}: the traced run gave outputs that differ from the "
            f"expected ones (image {check['first_mismatch']})"
        )
    if len(regions) != len(raw):
        raise McuError(
            f"{image.board.name}: the trace holds {len(regions)} inferences, expected {len(raw)}"
        )

    def tally(pcs: Counter[int]) -> dict[str, Any]:
        funcs: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        for pc, n in pcs.items():
            cat = table.category(pc)
            if cat == "harness":
                continue
            funcs[table.name(pc)] += n
            cats[cat] += n
        return {
            "total": sum(funcs.values()),
            "per_function": dict(sorted(funcs.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_category": dict(sorted(cats.items())),
        }

    per_image = []
    for reg in regions:
        calls = [tally(c) for c in reg.calls]
        per_image.append(
            {
                "quantize": tally(reg.quantize),
                "infer": tally(reg.infer),
                # The calls made by <prefix>_infer, in order (harness-only runs dropped).
                "calls": [c for c in calls if c["total"]],
            }
        )
    return {
        "images": per_image,
        "seconds": seconds,
        "method": f"qemu-system-arm {tool.qemu_version[0]}.{tool.qemu_version[1]} "
        f"-d exec,nochain {' '.join(tool.single_step_flags())}, "
        "PCs mapped with arm-none-eabi-nm -S",
    }


def per_layer(calls: list[dict[str, Any]], layers: Any) -> list[dict[str, Any]] | None:
    """Instructions per layer: the calls of ``<prefix>_infer`` matched, in order, to the layers
    of export.json. None when they do not pair up one to one."""
    if not isinstance(layers, list) or len(layers) != len(calls) or not calls:
        return None
    out = []
    for layer, call in zip(layers, calls, strict=True):
        if not isinstance(layer, dict):
            return None
        macs = layer.get("macs")
        macs = macs if isinstance(macs, int) and not isinstance(macs, bool) else None
        out.append(
            {
                "name": layer.get("name"),
                "kernel": layer.get("kernel"),
                "ops": layer.get("ops"),
                "macs": macs,
                "instructions": call["total"],
                "per_mac": round(call["total"] / macs, 3) if macs else None,
                "per_function": call["per_function"],
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# One board, end to end


@dataclasses.dataclass
class BoardRequest:
    """What to run on a board. ``images`` is a count, "fit" (as many as the flash holds) or
    "all" (stream the whole test set)."""

    images: int | str = "fit"
    count_images: int = 1
    dsp: bool = True
    stack_size: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    extra_cflags: tuple[str, ...] = ()


ExpectedFn = Callable[[int], np.ndarray]


def run_board(
    export: Export,
    board: Board,
    tool: Toolchain,
    build_dir: Path,
    raw_images: np.ndarray,
    expected_fn: ExpectedFn,
    request: BoardRequest,
    log: Callable[[str], None] | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Build, run and measure on one board. ``expected_fn(n)`` returns the expected int8
    outputs of the first ``n`` images of ``raw_images`` (uint8 [N, 28, 28]). With ``labels``,
    a streaming run also reports the top-1 accuracy of the outputs computed on the core."""
    say = log or (lambda _msg: None)
    t_start = time.monotonic()
    builder = Builder(
        export,
        board,
        tool,
        build_dir,
        dsp=request.dsp,
        stack_size=request.stack_size,
        extra_cflags=request.extra_cflags,
    )
    total = len(raw_images)
    report: dict[str, Any] = {
        "board": board.name,
        "core": board.core,
        "chip": board.chip,
        "qemu_machine": board.qemu_machine,
        "cflags": list(builder.cflags),
        "dsp_path_enabled": builder.dsp,
        "memory_map": {
            "flash": [board.flash.origin, board.flash.length],
            "ram": [board.ram.origin, board.ram.length],
        },
    }
    out_size = builder.output_size
    if request.images == "all":
        say(f"{board.name}: building the streaming image")
        image = builder.link(np.zeros((0, PIXELS), np.uint8), np.zeros((0, out_size), np.int8))
        expected = expected_fn(total)
        say(f"{board.name}: streaming {total} images through the core")
        result, got = run_stream(
            tool, image, raw_images, out_size, request.timeout, build_dir / "stream"
        )
        check = compare_outputs(got, expected)
        if labels is not None:
            pred = np.argmax(got, axis=1)  # first maximum wins, as in <prefix>_predict
            report["on_mcu_accuracy"] = float(np.mean(pred == labels[: len(got)]))
        mode = "stream"
    else:
        capacity = builder.vector_capacity(total)
        n = capacity if request.images == "fit" else min(int(request.images), capacity)
        if request.images != "fit" and n < int(request.images):
            say(
                f"{board.name}: {n} of the {request.images} requested test vectors fit the "
                f"{board.flash.length // 1024} KB flash"
            )
        if n < 1:
            raise McuError(
                f"{board.name}: not one test vector fits the flash next to the library and harness"
            )
        expected = expected_fn(n)
        say(f"{board.name}: building with {n} embedded test vectors")
        image = builder.link(raw_images[:n], expected)
        result = run_image(tool, image, ["vectors"], request.timeout)
        v = result.values
        check = {
            "images": v.get("images", -1),
            "mismatched_images": v.get("mismatched_images", -1),
            "mismatched_bytes": v.get("mismatched_bytes", -1),
            "first_mismatch": v.get("first_mismatch", -1),
        }
        if check["images"] != n:
            raise McuError(f"{board.name}: the image ran {check['images']} of {n} test vectors")
        report["vector_capacity"] = capacity
        report["vectors_requested"] = request.images
        mode = "vectors"
    v = result.values
    memory = memory_report(image, tool)
    memory["stack"] = {
        "high_water": v["stack_hwm"],
        "library": v["lib_stack"],
        "reserved": v["stack_size"],
    }
    memory["peak_ram"] = memory["ram"]["static"] + v["stack_hwm"]
    ram = memory["ram"]
    if builder.scratch_size > 0 and ram["scratch"] != builder.scratch_size:
        raise McuError(
            f"{board.name}: the scratch buffer takes {ram['scratch']} B of RAM, "
            f"the header says {builder.scratch_size}"
        )
    memory["peak_ram_breakdown"] = {
        "scratch": ram["scratch"],
        "io_buffers": ram["io_buffers"],
        "library_data_bss": ram["library"],
        "harness_data_bss": ram["harness"] + ram["runtime"] + ram["fill"],
        "stack_high_water": v["stack_hwm"],
    }
    # What an application needs for the library: its buffers, its statics and its stack.
    memory["library_ram"] = ram["scratch"] + ram["io_buffers"] + ram["library"] + v["lib_stack"]
    report.update(
        {
            "mode": mode,
            "check": check,
            "passed": check["mismatched_images"] == 0 and check["mismatched_bytes"] == 0,
            "qemu_seconds": round(result.seconds, 3),
            "memory": memory,
            "elf": str(image.elf),
        }
    )
    if request.count_images > 0:
        k = min(request.count_images, total)
        say(f"{board.name}: counting instructions over {k} inference(s)")
        counts = count_instructions(
            tool,
            image,
            raw_images[:k],
            expected_fn(k),
            request.timeout,
            build_dir / "count",
            root_function=f"{export.prefix}_infer",
        )
        first = counts["images"][0]
        macs = export.macs()
        report["instructions"] = {
            "per_inference": first["infer"]["total"],
            "per_inference_all": [img["infer"]["total"] for img in counts["images"]],
            "quantize": first["quantize"]["total"],
            "per_function": first["infer"]["per_function"],
            "per_layer": per_layer(first["calls"], export.meta.get("layers")),
            "calls": [c["total"] for c in first["calls"]],
            "quantize_per_function": first["quantize"]["per_function"],
            "by_category": first["infer"]["by_category"],
            "macs": macs,
            "per_mac": round(first["infer"]["total"] / macs, 3) if macs else None,
            "counted_images": k,
            "trace_seconds": round(counts["seconds"], 3),
            "method": counts["method"],
        }
    report["seconds"] = round(time.monotonic() - t_start, 3)
    return report
