"""`lenet-edge package DIR --format arduino`: the Arduino library is laid out as the library
specification (1.5) asks, compiled the way the Arduino builder compiles a sketch for an
Arduino Nano 33 BLE (nRF52840, Cortex-M4F): every .c under src/ with arm-none-eabi-gcc and
that core's flags, the .ino as C++ against a minimal Arduino.h stand-in
(tests/c/arduino_stub/), all with -Wall -Wextra -Werror. The library's objects are then
linked into the mcu-test harness for the emulated Cortex-M4 and checked bit for bit against
TFLM under QEMU, and the sketch itself runs there, printing the classes over its Serial.

Not exercised: Arduino's own builder (arduino-cli) and IDE, a real Arduino core, real
hardware; the .ino is compiled only against the stand-in.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_export import mcu
from lenet_edge import data
from lenet_edge.cli import main
from lenet_edge.commands.mcu_test import Expected
from tests.package.helpers import run, run_prebuilt_on_board
from tests.support import C_DIR
from tests.support.export_helpers import need_toolchain

STUB = C_DIR / "arduino_stub"
#: The Arduino Nano 33 BLE core's CPU flags (nRF52840: Cortex-M4F); the emulated M4 board
#: uses the same ones, so its harness links with these objects.
NANO33BLE = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
COMMON = ("-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror")
C_FLAGS = (*NANO33BLE, "-std=gnu11", *COMMON)
CXX_FLAGS = (*NANO33BLE, "-std=gnu++14", "-fno-exceptions", "-fno-rtti", *COMMON)
BOARD = "mps2-an386"


@pytest.fixture(scope="module")
def library(pkg_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("arduino-export") / "lenet_c"
    shutil.copytree(pkg_export, copy)
    assert main(["package", str(copy), "--format", "arduino", "-q"]) == 0
    return copy / "arduino" / "Lenet"


def test_the_library_follows_the_1_5_layout(library: Path, pkg_export: Path) -> None:
    props = dict(
        line.split("=", 1)
        for line in (library / "library.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "url"):
        assert props[key].strip(), key
    assert props["name"] == "Lenet" and props["category"] == "Data Processing"
    assert props["architectures"] == "*" and props["includes"] == "lenet.h"
    assert json.loads((library / "library.json").read_text())["name"] == "Lenet"
    # src/ holds the engine, byte for byte, flat, with the prefix's header at its top.
    standalone = sorted(p.name for p in (pkg_export / "standalone").iterdir())
    assert sorted(p.name for p in (library / "src").rglob("*")) == standalone
    for name in standalone:
        assert (library / "src" / name).read_bytes() == (
            pkg_export / "standalone" / name
        ).read_bytes()
    ino = library / "examples" / "LenetDigits" / "LenetDigits.ino"
    text = ino.read_text()
    assert "#include <lenet.h>" in text and "lenet_predict(" in text and "Serial.print" in text
    assert "static const uint8_t kDigits[DIGITS][LENET_MNIST_PIXELS]" in text
    # Nothing else that the Arduino builder would compile (it compiles src/ recursively).
    compiled = [p for p in library.rglob("*") if p.suffix in (".c", ".cpp", ".cc", ".S")]
    assert all(p.parent == library / "src" for p in compiled)


def _compile_library(tool: mcu.Toolchain, library: Path, out: Path) -> list[Path]:
    """Every .c/.cpp under src/, recursively, as the Arduino builder compiles a library."""
    out.mkdir(parents=True, exist_ok=True)
    objects = []
    for src in sorted((library / "src").rglob("*")):
        if src.suffix not in (".c", ".cpp"):
            continue
        cc = tool.gcc if src.suffix == ".c" else tool.gcc.replace("gcc", "g++")
        flags = C_FLAGS if src.suffix == ".c" else CXX_FLAGS
        obj = out / f"{src.name}.o"
        assert not obj.exists(), f"{src.name} compiled twice"
        run([cc, *flags, "-I", str(library / "src"), "-c", str(src), "-o", str(obj)])
        objects.append(obj)
    return objects


def test_library_and_sketch_compile_for_a_nano_33_ble_and_run_bit_exact_under_qemu(
    library: Path,
    tflm_expected: Expected,
    mnist: data.Mnist,
    pkg_export: Path,
    tmp_path: Path,
) -> None:
    tool = need_toolchain()
    gxx = tool.gcc.replace("gcc", "g++")
    board = mcu.load_board(BOARD)
    assert set(NANO33BLE) == set(board.cflags)  # the harness links with these objects
    objects = _compile_library(tool, library, tmp_path / "lib")
    assert len(objects) == len(list((pkg_export / "standalone").glob("*.c")))
    # lenet_host_simd.c compiles to nothing on Arm: no symbol, no byte of code or data.
    simd = next(o for o in objects if o.name == "lenet_host_simd.c.o")
    assert run([tool.nm, "--defined-only", str(simd)]).strip() == ""
    # The sketch, as C++ with the Arduino.h stand-in included first (as the builder does).
    ino = library / "examples" / "LenetDigits" / "LenetDigits.ino"
    sketch = tmp_path / "LenetDigits.ino.o"
    stub_flags = ["-I", str(STUB), "-I", str(library / "src")]
    run(
        [
            gxx,
            *CXX_FLAGS,
            "-x",
            "c++",
            "-include",
            "Arduino.h",
            *stub_flags,
            "-c",
            str(ino),
            "-o",
            str(sketch),
        ]
    )

    # 1. The library's objects in the mcu-test harness: 100 digits, every byte as TFLM's.
    run_prebuilt_on_board(
        pkg_export,
        BOARD,
        tuple(objects),
        library / "src",
        100,
        tflm_expected,
        mnist.x_test,
        tmp_path / "qemu",
    )

    # 2. The sketch itself on the emulated M4: setup() prints each digit's class over Serial.
    work = tmp_path / "sketch"
    work.mkdir()
    core = [
        (tool.gcc, C_FLAGS, mcu.COMMON_DIR / "startup.S"),
        (tool.gcc, C_FLAGS, mcu.COMMON_DIR / "semihost.c"),
        (gxx, CXX_FLAGS, STUB / "arduino_main.cpp"),
    ]
    core_objects = []
    for cc, flags, src in core:
        obj = work / f"{src.name}.o"
        run(
            [cc, *flags, "-I", str(mcu.COMMON_DIR), "-I", str(STUB), "-c", str(src), "-o", str(obj)]
        )
        core_objects.append(str(obj))
    elf = work / "LenetDigits.elf"
    run(
        [
            tool.gcc,
            *NANO33BLE,
            *mcu.link_flags(board),
            *core_objects,
            str(sketch),
            *map(str, objects),
            *mcu.LINK_LIBS,
            "-o",
            str(elf),
        ]
    )
    proc = subprocess.run(
        mcu.qemu_argv(tool, board, elf, []),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^digit (\d+) \(label (\d+)\): class (\d+), TFLM: (\d+)$", proc.stdout, re.M)
    assert len(rows) == 4, proc.stdout
    want = np.argmax(tflm_expected(4), axis=1)  # the first maximum, as lenet_predict
    for i, (index, label, cls, tflm) in enumerate(rows):
        assert int(index) == i and int(label) == mnist.y_test[i]
        assert int(cls) == int(tflm) == want[i]
    assert "classes as TFLM: 4 of 4" in proc.stdout
