"""bench's `export-c --optimize speed` / `size` comparison.

The speed export is the one the rest of the bench measures; this adds the size export of the
same model, run on every board, and one table that sets the two side by side: what size
saves (scratch, weights and tables, flash) and what it costs (instructions). Both columns
come from the same run, the same boards and the same harness; each export is built at its
own optimisation level (-O2 / -Os), as its Makefile and mcu-test build it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

#: The boards of the comparison, by the label bench gives their speed rows.
BOARDS = (
    ("Cortex-M4 (DSP)", "mps2-an386"),
    ("Cortex-M7 (DSP)", "mps2-an500"),
    ("Cortex-M3 (portable C)", "stm32vldiscovery"),
    ("Cortex-M0 (portable C)", "microbit"),
)


class Runner(Protocol):
    """What this needs of ``bench.Bench``: run a lenet-edge command under a key."""

    def run(self, key: str, args: list[str]) -> float: ...


def measure_size_mode(b: Runner, variant: str, run: Path, tfl: Path) -> dict[str, Any]:
    """Export ``tfl`` with ``--optimize size`` and run it on every board (up to 100 images,
    as many as each board's flash holds)."""
    cdir = run / "c_size"
    report = run / "mcu_all_size.json"
    export_args = ["export-c", str(tfl), "--out", str(cdir), "--optimize", "size", "-q"]
    b.run(f"{variant}/export-c-size", export_args)
    mcu_args = ["mcu-test", str(cdir), "--board", "all", "--images", "100", "--json", str(report)]
    b.run(f"{variant}/mcu-all-size", [*mcu_args, "-q"])
    from lenet_edge.bench import _board, _core_row  # bench imports this module lazily

    export = json.loads((cdir / "export.json").read_text())
    boards = json.loads(report.read_text())
    cores = []
    for label, name in BOARDS:
        board = _board(boards, name)
        cores.append(
            {
                **_core_row(label, board),
                "bit_exact": board["passed"],
                "images": board["check"]["images"],
            }
        )
    return {
        "command": f"lenet-edge export-c MODEL --optimize size; mcu-test --board all "
        f"--images 100 ({variant})",
        "scratch_size": export["scratch_size"],
        "weight_bytes": export["weight_bytes"]["total"],
        "cores": cores,
    }


def optimize_markdown(main: dict[str, Any]) -> list[str]:
    """The speed / size table of the main variant; nothing when the run has no size figures."""
    size = main.get("optimize_size")
    if not size or "cores" not in main:
        return []
    speed = {c["label"]: c for c in main["cores"]}
    e = main["export"]
    rows: list[tuple[str, Any, Any]] = [
        ("`LENET_SCRATCH_SIZE` (B)", e["scratch_size"], size["scratch_size"]),
        ("weights and tables, `const` (B)", e["weight_bytes"]["total"], size["weight_bytes"]),
    ]
    pairs = [(speed[c["label"]], c) for c in size["cores"] if c["label"] in speed]
    rows += [
        (f"library flash, {c['label']} (B)", f["code_bytes"], c["code_bytes"]) for f, c in pairs
    ]
    rows += [
        (f"instructions per inference, {c['label']}", f["instructions"], c["instructions"])
        for f, c in pairs
    ]
    exact = all(c["bit_exact"] for c in size["cores"])
    lines = [
        f"## `export-c --optimize speed` and `size` (`{main['variant']}`)",
        "",
        "The same model exported both ways. `size` plans every convolution on the generic "
        "kernel with int8 weights (no doubled int16 pairs), computes the softmax exp instead "
        "of tabling it, and is built at `-Os`; `speed` (the default, measured everywhere "
        "else in this file) is built at `-O2`. Library flash is code and data, from "
        "`mcu-test`'s map of each image.",
        "",
        "| figure | speed | size | size / speed |",
        "|---|---:|---:|---:|",
    ]
    for label, a, b in rows:
        ratio = f"{b / a:.2f}×" if a else "–"
        lines.append(f"| {label} | {a:,} | {b:,} | {ratio} |")
    lines += [
        "",
        "Size export on every board, bit for bit with TFLM: "
        f"{'yes' if exact else 'NO'} ("
        + ", ".join(f"{c['board']} {c['images']} images" for c in size["cores"])
        + f"; up to 100, as many as each flash holds). Command: `{size['command']}`.",
        "",
    ]
    return lines
