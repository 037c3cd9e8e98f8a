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
#: The optimisation level of every build of the library unless a caller asks otherwise.
OPTIMIZE = "-O2"
