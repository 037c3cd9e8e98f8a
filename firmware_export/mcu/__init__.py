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

One module per stage: ``boards`` (the board packages, the one board list), ``toolchain``
(finding and running the tools), ``build`` (the export to build, :class:`Builder`),
``memory`` (map file, flash/RAM report), ``qemu`` (running an image), ``trace`` (instruction
counts), ``cycles`` (cycles estimated from that trace with the TRMs' per-class timings) and
``run`` (one board end to end). This package never imports TensorFlow: expected
outputs are computed by the caller.
"""

from __future__ import annotations

from firmware_export.mcu.boards import (
    BOARDS_DIR,
    COMMON_DIR,
    Board,
    Region,
    board_names,
    load_board,
)
from firmware_export.mcu.build import (
    C_FLAGS,
    HARNESS_SOURCES,
    LINK_LIBS,
    Builder,
    Export,
    Prebuilt,
    link_flags,
    macs_from_export_json,
    read_export,
)
from firmware_export.mcu.errors import McuError, McuUsageError
from firmware_export.mcu.memory import Image, MapSection, memory_report, parse_map
from firmware_export.mcu.qemu import (
    IMAGE_EXIT,
    PIXELS,
    RunResult,
    compare_outputs,
    qemu_argv,
    run_image,
    run_stream,
)
from firmware_export.mcu.run import DEFAULT_TIMEOUT, BoardRequest, ExpectedFn, run_board
from firmware_export.mcu.toolchain import INSTALL_HINT, Toolchain, find_toolchain
from firmware_export.mcu.trace import (
    MARKERS,
    Symbol,
    TracedImage,
    count_instructions,
    function_symbols,
    per_layer,
)

__all__ = [
    "BOARDS_DIR",
    "COMMON_DIR",
    "C_FLAGS",
    "DEFAULT_TIMEOUT",
    "HARNESS_SOURCES",
    "IMAGE_EXIT",
    "INSTALL_HINT",
    "LINK_LIBS",
    "MARKERS",
    "PIXELS",
    "Board",
    "BoardRequest",
    "Builder",
    "ExpectedFn",
    "Export",
    "Image",
    "MapSection",
    "McuError",
    "McuUsageError",
    "Prebuilt",
    "Region",
    "RunResult",
    "Symbol",
    "Toolchain",
    "TracedImage",
    "board_names",
    "compare_outputs",
    "count_instructions",
    "find_toolchain",
    "function_symbols",
    "link_flags",
    "load_board",
    "macs_from_export_json",
    "memory_report",
    "parse_map",
    "per_layer",
    "qemu_argv",
    "read_export",
    "run_board",
    "run_image",
    "run_stream",
]
