"""`lenet-edge package DIR --format cmake`: the CMake project is configured, built and its
ctest run on the host; consumed by a user's project through add_subdirectory and
FetchContent; cross-built with its toolchain file for the Cortex-M4 and the Cortex-M0, and
the static library CMake made is linked into the bare-metal mcu-test harness and run under
QEMU, every output byte compared with TFLM.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware_export import mcu
from firmware_export.cflags import WARNINGS
from lenet_edge import data
from lenet_edge.cli import main
from lenet_edge.commands.mcu_test import Expected
from tests.package.helpers import run, run_prebuilt_on_board
from tests.support.export_helpers import need_toolchain, requires, skip_unless

#: Core -> the emulated board that runs it (the toolchain file's flags are that board's).
CORES = {"cortex-m4": ("mps2-an386", "100"), "cortex-m0": ("microbit", "fit")}


def _generator() -> list[str]:
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _configure(build: Path, source: Path, *options: str) -> None:
    run(["cmake", *_generator(), "-B", str(build), "-S", str(source), *options])


@pytest.fixture(scope="module")
def cmake_export(pkg_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    skip_unless("cmake")
    copy = tmp_path_factory.mktemp("cmake-export") / "lenet_c"
    shutil.copytree(pkg_export, copy)
    assert main(["package", str(copy), "--format", "cmake", "-q"]) == 0
    return copy


def test_package_writes_the_cmake_folder_with_its_record(cmake_export: Path) -> None:
    folder = cmake_export / "cmake"
    record = json.loads((folder / "package.json").read_text())
    assert record["tool"].startswith("lenet-edge ") and record["format"] == "cmake"
    assert set(record["files"]) == {"CMakeLists.txt", "arm-none-eabi.cmake"}
    text = (folder / "CMakeLists.txt").read_text()
    for needle in (
        "add_library(lenet STATIC",
        "add_library(lenet::lenet ALIAS lenet)",
        "C_STANDARD 99",
        "C_STANDARD_REQUIRED ON",
        "C_EXTENSIONS OFF",
        'target_include_directories(lenet PUBLIC "$<BUILD_INTERFACE:${LENET_STANDALONE}>")',
        "${CMAKE_CURRENT_LIST_DIR}/../standalone",
        "add_test(NAME lenet_test_vectors",
    ):
        assert needle in text, needle
    assert text.count("target_include_directories(lenet ") == 1  # the public one only
    # Every engine source, and nothing else, is in the library.
    sources = sorted(p.name for p in (cmake_export / "standalone").glob("*.c"))
    assert [s for s in sources if f'/{s}"' in text] == sources
    assert "lenet_host_simd.c" in sources  # compiles to a typedef on Arm
    # The toolchain file's flags are the emulated boards' (one board list).
    tc = (folder / "arm-none-eabi.cmake").read_text()
    for name in mcu.board_names():
        board = mcu.load_board(name)
        assert " ".join(board.cflags) in tc, name
    # Re-packaging replaces the previous output; the export is still unmodified for mcu-test.
    assert main(["package", str(cmake_export), "--format", "cmake", "-q"]) == 0
    from firmware_export.exportdir import export_changes

    meta = json.loads((cmake_export / "export.json").read_text())
    assert export_changes(cmake_export, meta) == []


@requires("cmake")
def test_cmake_host_build_and_ctest(cmake_export: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    _configure(
        build,
        cmake_export / "cmake",
        "-DLENET_WARNINGS_AS_ERRORS=ON",
        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
    )
    run(["cmake", "--build", str(build)])
    commands = json.loads((build / "compile_commands.json").read_text())
    lib = [c for c in commands if "/standalone/" in c["file"]]
    assert len(lib) == len(list((cmake_export / "standalone").glob("*.c")))
    for c in lib:  # C99 without extensions, and the project's strict warnings as errors
        assert "-std=c99" in c["command"] and all(w in c["command"] for w in WARNINGS)
    out = run(["ctest", "--test-dir", str(build), "--output-on-failure"])
    assert "100% tests passed, 0 tests failed out of 1" in out


@requires("cmake")
def test_size_export_configures_min_size_rel_by_default(int8_model: Any, tmp_path: Path) -> None:
    """An export-c --optimize size export's CMake package defaults to MinSizeRel (-Os, the
    level its Makefile and mcu-test use): CMake's own compile commands say so. (The build
    and ctest are the speed package's tests; the size engine's bit-exactness is tested at
    -Os on the host and on every board elsewhere.)"""
    export = tmp_path / "size"
    argv = ["export-c", str(int8_model()), "--out", str(export), "--optimize", "size", "-q"]
    assert main(argv) == 0
    assert main(["package", str(export), "--format", "cmake", "-q"]) == 0
    text = (export / "cmake" / "CMakeLists.txt").read_text()
    assert "set(CMAKE_BUILD_TYPE MinSizeRel CACHE STRING" in text
    build = tmp_path / "build"
    _configure(build, export / "cmake", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON")
    commands = json.loads((build / "compile_commands.json").read_text())
    lib = [c["command"] for c in commands if "/standalone/" in c["file"]]
    assert lib and all("-Os" in c and "-O3" not in c for c in lib)


CONSUMER_MAIN = """\
#include <stdio.h>
#include "lenet.h"
static union { int8_t b[LENET_SCRATCH_SIZE]; int32_t align; } scratch;
int main(void) {
    static const int8_t input[LENET_INPUT_SIZE] = {0};
    int cls = lenet_predict(input, scratch.b);
    printf("class %d\\n", cls);
    return cls >= 0 && cls < LENET_OUTPUT_SIZE ? 0 : 1;
}
"""


@requires("cmake")
@pytest.mark.parametrize("how", ["add_subdirectory", "FetchContent"])
def test_a_users_project_links_lenet_lenet(cmake_export: Path, tmp_path: Path, how: str) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.c").write_text(CONSUMER_MAIN)
    export = cmake_export.as_posix()
    use = (
        f'add_subdirectory("{export}/cmake" lenet)'
        if how == "add_subdirectory"
        else "include(FetchContent)\n"
        f'FetchContent_Declare(lenet SOURCE_DIR "{export}" SOURCE_SUBDIR cmake)\n'
        "FetchContent_MakeAvailable(lenet)"
    )
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(app C)\nenable_testing()\n"
        f"{use}\nadd_executable(app main.c)\ntarget_link_libraries(app PRIVATE lenet::lenet)\n"
    )
    build = tmp_path / "build"
    _configure(build, app)
    run(["cmake", "--build", str(build)])
    assert run([str(build / "app")]).startswith("class ")
    # The engine's own test vectors are not added to a user's project.
    proc = subprocess.run(["ctest", "--test-dir", str(build)], capture_output=True, text=True)
    assert "No tests were found" in proc.stdout + proc.stderr


@pytest.mark.parametrize("cpu", sorted(CORES))
def test_cmake_cross_build_runs_bit_exact_under_qemu(
    cmake_export: Path,
    tflm_expected: Expected,
    mnist: data.Mnist,
    tmp_path: Path,
    cpu: str,
) -> None:
    need_toolchain("cmake")
    board_name, images = CORES[cpu]
    board = mcu.load_board(board_name)
    build = tmp_path / f"build-{cpu}"
    _configure(
        build,
        cmake_export / "cmake",
        f"-DCMAKE_TOOLCHAIN_FILE={cmake_export / 'cmake' / 'arm-none-eabi.cmake'}",
        f"-DLENET_CPU={cpu}",
        "-DLENET_WARNINGS_AS_ERRORS=ON",
        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
    )
    run(["cmake", "--build", str(build)])
    archive = build / "liblenet.a"
    assert archive.is_file()
    assert not (build / "lenet_test_vectors").exists()  # no host test in a cross build
    for c in json.loads((build / "compile_commands.json").read_text()):
        assert all(flag in c["command"].split() for flag in board.cflags), c["command"]
    run_prebuilt_on_board(
        cmake_export,
        board_name,
        (archive,),
        cmake_export / "standalone",
        images,
        tflm_expected,
        mnist.x_test,
        tmp_path / "qemu",
    )
