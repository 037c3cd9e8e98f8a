"""``DIR/cmake/``: a CMake project around ``DIR/standalone`` (static library ``<prefix>``,
alias ``<prefix>::<prefix>``, ctest over ``DIR/test``) and a toolchain file for
arm-none-eabi-gcc whose ``LENET_CPU`` picks the flags of the board that emulates that core.

The CMakeLists references ``../standalone`` and ``../test`` rather than copying them: the
export keeps one copy of the engine, the one export.json lists and mcu-test checks, so a
CMake build compiles exactly the tested bytes. It is used from inside the export directory
(``add_subdirectory(DIR/cmake)`` or FetchContent of the whole export with
``SOURCE_SUBDIR cmake``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware_export.cflags import WARNINGS, optimize_mode
from firmware_export.csyntax import banner, render
from firmware_export.mcu.boards import board_names, load_board
from firmware_export.package import banner_lines, export_files

DEFAULT_CPU = "cortex-m4"
#: The package's default build type by export-c --optimize mode (when the user sets none).
CMAKE_BUILD_TYPES = {"speed": "Release", "size": "MinSizeRel"}


def cpu_flags() -> list[tuple[str, tuple[str, ...]]]:
    """``(cpu, flags)`` per Cortex-M core, taken from the board packages (the one board list):
    the flags ``-mcpu=...`` and the float ABI of the board that emulates that core."""
    table: dict[str, tuple[str, ...]] = {}
    for name in board_names():
        flags = load_board(name).cflags
        cpu = next(f.split("=", 1)[1] for f in flags if f.startswith("-mcpu="))
        table.setdefault(cpu, flags)
    return sorted(table.items())


def write(export_dir: Path, dest: Path, meta: dict[str, Any]) -> None:
    prefix = str(meta["prefix"])
    lines = banner_lines(meta, "cmake")
    test_sources = ["main_host.c", *export_files(meta, "test", (".c",))]
    table = cpu_flags()
    mode = optimize_mode(meta)
    (dest / "CMakeLists.txt").write_text(
        render(
            "package/CMakeLists.txt.j2",
            banner=banner(lines, style="hash"),
            p=prefix,
            P=prefix.upper(),
            sources=export_files(meta, "standalone", (".c",)),
            test_sources=list(dict.fromkeys(test_sources)),
            warnings=list(WARNINGS),
            # The default build type follows export-c --optimize (-O3 / -Os).
            optimize=mode,
            build_type=CMAKE_BUILD_TYPES[mode],
        )
    )
    (dest / "arm-none-eabi.cmake").write_text(
        render(
            "package/arm-none-eabi.cmake.j2",
            banner=banner(lines, style="hash"),
            cpu_flags=table,
            cpus=[cpu for cpu, _ in table],
            default_cpu=DEFAULT_CPU,
        )
    )
