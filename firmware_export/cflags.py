"""The one set of strict compiler flags the generated C is built with (issue 4): the MCU build
(``firmware_export.mcu``), the host throughput harness (``lenet_edge.engine_bench``), the
export's Makefile and the tests all take them from here.

The standalone library compiles cleanly as C99 with every warning below turned into an error;
the TFLM example compiles as C++11 with the same warnings.
"""

from __future__ import annotations

#: Warnings, all of them errors.
WARNINGS = ("-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wshadow")
C_STD = "-std=c99"
CXX_STD = "-std=c++11"
#: Strict C99: the standard and the warnings (no optimisation flag).
C_STRICT = (C_STD, *WARNINGS)
#: Strict C++11, for the TFLM example.
CXX_STRICT = (CXX_STD, *WARNINGS)
#: The optimisation level of each build of the library, by ``export-c --optimize`` mode (the
#: export records its mode in export.json; test/Makefile, mcu-test, the CMake package's
#: default build type and the WASM package follow it).
OPTIMIZE_FLAGS = {"speed": "-O2", "size": "-Os"}
#: The ``export-c --optimize`` modes (the plan's, the CLI's and the scripts' one list).
OPTIMIZE_MODES = tuple(OPTIMIZE_FLAGS)
#: The level of a speed export, and of every build that does not come from an export.
OPTIMIZE = OPTIMIZE_FLAGS["speed"]


def optimize_mode(meta: dict[str, object]) -> str:
    """The ``--optimize`` mode of the export that ``meta`` (its export.json) describes; an
    export.json written before ``--optimize`` existed is a speed export."""
    mode = str(meta.get("optimize", "speed"))
    return mode if mode in OPTIMIZE_FLAGS else "speed"


def optimize_flag(meta: dict[str, object]) -> str:
    """The optimisation flag of the export that ``meta`` describes."""
    return OPTIMIZE_FLAGS[optimize_mode(meta)]
