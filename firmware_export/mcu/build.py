"""Building: the export-c output to build (:func:`read_export`), and :class:`Builder`, which
compiles the library and the harness for a board once and links images with test vectors.
With a :class:`Prebuilt` library (one a user's build made: CMake's static library, an
Arduino-style compile of the library's objects) the Builder links that instead of compiling
DIR/standalone itself, so the same harness checks what another build system produced."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.cflags import C_STD, OPTIMIZE, WARNINGS, optimize_flag
from firmware_export.mcu.boards import COMMON_DIR, Board
from firmware_export.mcu.errors import McuError
from firmware_export.mcu.memory import Image, memory_report
from firmware_export.mcu.qemu import PIXELS
from firmware_export.mcu.toolchain import INSTALL_HINT, Toolchain, run_tool

#: Compiler flags for every C file (the generated library must pass these; issue 4).


def c_flags(level: str = OPTIMIZE) -> tuple[str, ...]:
    """The flags of every bare-metal compile but the CPU's; ``level``: the export's
    optimisation flag (``cflags.optimize_flag``)."""
    return (C_STD, level, "-ffunction-sections", "-fdata-sections", *WARNINGS)


#: A speed build's flags (what the probes and kernel tests compile with).
C_FLAGS = c_flags()
HARNESS_SOURCES = ("startup.S", "semihost.c", "harness.c")
FLASH_SLACK = 8  # alignment padding allowance when filling the flash with test vectors


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


def link_flags(board: Board) -> list[str]:
    """How every bare-metal image is linked: no host C runtime or start files, unused sections
    dropped, the board's linker script (which includes ``boards/common/cortexm.ld``). The
    libraries (:data:`LINK_LIBS`) go after the objects."""
    return [
        "-nostdlib",
        "-nostartfiles",
        "-Wl,--gc-sections",
        "-L",
        str(COMMON_DIR),
        "-T",
        str(board.directory / "board.ld"),
    ]


#: newlib's C library (string functions) and libgcc, after the objects that need them.
LINK_LIBS = ("-lc", "-lgcc")


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


@dataclasses.dataclass(frozen=True)
class Prebuilt:
    """A library compiled outside the Builder: static archives (``.a``) and/or objects
    (``.o``) for the board's core, and the folder holding its public header ``<prefix>.h``.
    They are copied into the build's ``lib/`` (so the memory report counts them as the
    library) and linked after the harness."""

    files: tuple[Path, ...]
    include_dir: Path

    def __post_init__(self) -> None:
        if not self.files:
            raise McuError("internal: a prebuilt library needs at least one file")


def _check_newlib(tool: Toolchain, board: Board, cwd: Path) -> None:
    out = run_tool(
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
        prebuilt: Prebuilt | None = None,
    ) -> None:
        self.export = export
        self.prebuilt = prebuilt
        self.board = board
        self.tool = tool
        self.dir = build_dir.resolve()
        self.dsp = dsp and board.dsp
        self.stack_size = stack_size
        self.output_size = export.header_int("OUTPUT_SIZE")
        self.input_size = export.header_int("INPUT_SIZE")
        self.scratch_size = export.header_int("SCRATCH_SIZE")
        extra = [] if dsp else [f"-D{export.macro_prefix}_NO_DSP", "-U__ARM_FEATURE_DSP"]
        level = optimize_flag(export.meta)
        self.cflags = (*board.cflags, *c_flags(level), *extra, *extra_cflags)
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
        pre = self.prebuilt
        includes = [
            "-I",
            str(pre.include_dir if pre else self.export.directory / "standalone"),
            "-I",
            "gen",
            "-I",
            str(COMMON_DIR),
        ]
        objects = []
        for src in self.export.sources if pre is None else ():
            obj = f"lib/{src.stem}.o"
            run_tool(
                [self.tool.gcc, *self.cflags, *includes, "-c", str(src), "-o", obj],
                d,
                f"compiling {src.name} for {self.board.name}",
            )
            objects.append(obj)
        for name in HARNESS_SOURCES:
            obj = f"harness/{Path(name).stem}.o"
            run_tool(
                [self.tool.gcc, *self.cflags, *includes, "-c", str(COMMON_DIR / name), "-o", obj],
                d,
                f"compiling the harness ({name}) for {self.board.name}",
            )
            objects.append(obj)
        for path in pre.files if pre else ():  # after the harness: archives resolve its calls
            shutil.copyfile(path, d / "lib" / path.name)
            objects.append(f"lib/{path.name}")
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
        run_tool(
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
            *link_flags(self.board),
            f"-Wl,-Map={mapf}",
            *objects,
            vobj,
            *LINK_LIBS,
            "-o",
            elf,
        ]
        if self.stack_size is not None:
            ld.insert(1, f"-Wl,--defsym=__stack_size={self.stack_size}")
        run_tool(ld, self.dir, f"linking for {self.board.name} ({len(raw)} test vectors)")
        return Image(self.board, self.dir / elf, self.dir / mapf, self.dir)

    def vector_capacity(self, limit: int) -> int:
        """How many test vectors fit the flash next to the library and harness (at most limit)."""
        empty = self.link(
            np.zeros((0, PIXELS), np.uint8), np.zeros((0, self.output_size), np.int8), name="probe"
        )
        used = memory_report(empty, self.tool)["flash"]["total"]
        free = self.board.flash.length - used - FLASH_SLACK
        return max(0, min(limit, free // (PIXELS + self.output_size)))
