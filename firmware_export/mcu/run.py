"""One board, end to end: build, run (embedded vectors or streaming), check, measure."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.mcu import cycles
from firmware_export.mcu.boards import Board
from firmware_export.mcu.build import Builder, Export, Prebuilt
from firmware_export.mcu.errors import McuError
from firmware_export.mcu.memory import memory_report
from firmware_export.mcu.qemu import PIXELS, compare_outputs, run_image, run_stream
from firmware_export.mcu.toolchain import Toolchain
from firmware_export.mcu.trace import count_instructions, per_layer

DEFAULT_TIMEOUT = 900.0


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
    #: Link this library instead of compiling DIR/standalone (its build chose the flags).
    prebuilt: Prebuilt | None = None


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
        prebuilt=request.prebuilt,
    )
    total = len(raw_images)
    report: dict[str, Any] = {
        "board": board.name,
        "core": board.core,
        "chip": board.chip,
        "qemu_machine": board.qemu_machine,
        "cflags": list(builder.cflags),
        "dsp_path_enabled": builder.dsp if request.prebuilt is None else None,
        "prebuilt_library": (
            [p.name for p in request.prebuilt.files] if request.prebuilt else None
        ),
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
        # Cycles are estimated from the same trace (one inference), never measured.
        report["cycles"] = cycles.summarize(
            board.core,
            counts["model"],
            first["infer"].get("cycles"),
            first["quantize"].get("cycles"),
            [c["cycles"] for c in first["calls"] if "cycles" in c],
            report["instructions"]["per_layer"],
            macs,
        )
    report["seconds"] = round(time.monotonic() - t_start, 3)
    return report
