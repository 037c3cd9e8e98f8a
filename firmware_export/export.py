"""Orchestration of ``export-c``: model bytes in, every output file (and export.json) out.

graph = reader.load_graph(bytes)      # typed graph, validated
plan = plan.build_plan(graph)         # steps, weights, tables, memory
c_writer / tflm_writer / testvec_writer render files from the plan
the TFLM interpreter gives the arena size and the expected test outputs
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export import __version__
from firmware_export import plan as planmod
from firmware_export.csyntax import banner as make_banner
from firmware_export.csyntax import check_prefix
from firmware_export.digest import sha256_bytes
from firmware_export.emit.standalone import StandaloneWriter
from firmware_export.emit.testvec import render_test
from firmware_export.emit.tflm import Arena, render_tflm
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import Graph
from firmware_export.mnist import mnist_input, mnist_inputs, mnist_size
from firmware_export.reader import load_graph
from firmware_export.tflm import TflmModel, min_arena_size

DEFAULT_PREFIX = "lenet"
DEFAULT_TEST_VECTORS = 100


@dataclass
class ExportResult:
    """Everything export-c writes: ``files`` (relative path -> bytes) and ``report``."""

    files: dict[str, bytes]
    report: dict[str, Any]
    plan: planmod.Plan


def _layer_report(step: planmod.Step, op_kinds: dict[int, str]) -> dict[str, Any]:
    def where(b: planmod.Buffer) -> str:
        return b.location if b.location != "arena" else f"arena[{b.offset}:{b.offset + b.size}]"

    out: dict[str, Any] = {
        "name": step.name,
        "kernel": f"{step.kind}_s8",
        "ops": [op_kinds[i] for i in step.ops],
        "op_indices": list(step.ops),
        "output_tensor": step.out_tensor,
        "input": where(step.src),
        "output": where(step.dst),
        "in_place": step.in_place,
        "macs": step.macs,
        "tflm_macs": step.tflm_macs,
        "kernel_scratch": step.scratch,
    }
    if isinstance(step, planmod.ConvStep):
        out.update(
            output_shape=[step.out_h, step.out_w, step.out_c],
            filter_shape=list(step.weight_shape),
            padding=[step.pad_top, step.pad_left],
            stride=[step.stride_h, step.stride_w],
            weights=int(step.weights.size),
            dense_weights=int(np.prod(step.weight_shape)),
            skipped_input_maps=step.skipped_channels,
            fused_table=step.table.ops if step.table else [],
            fused_pool=step.pool.kind if step.pool else None,
            algo=step.algo,
            fast_requantization=step.fast is not None,
        )
        if step.tile is not None:
            out["tile"] = {
                "pairs_per_channel": int(step.tile.weights.shape[1]),
                "blocks": [step.tile.blocks_h, step.tile.blocks_w],
                "blocks_per_strip": step.tile.windows,
                "words_per_row": step.tile.width,
                "rows": step.tile.shape.rows,
            }
    elif isinstance(step, planmod.FullyConnectedStep):
        out.update(
            output_shape=[step.out_size],
            weights=int(step.weights.size),
            per_channel=step.per_channel,
            fast_requantization=step.fast is not None,
            fused_table=step.table.ops if step.table else [],
        )
    elif isinstance(step, planmod.PoolStep) and step.pool is not None:
        out.update(
            output_shape=[step.pool.out_h, step.pool.out_w, step.channels], pool=step.pool.kind
        )
    elif isinstance(step, planmod.LutStep) and step.table is not None:
        out.update(size=step.size, table=step.table.ops)
    elif isinstance(step, planmod.SoftmaxStep):
        out.update(rows=step.rows, depth=step.depth)
    return out


def model_feed(plan: planmod.Plan, inputs: np.ndarray) -> np.ndarray:
    """The values to give the .tflite model so that its int8 core sees ``inputs`` (int8
    engine inputs): the same array for an int8 model; for ``--io uint8`` the exact shift;
    for ``--io float32`` the real value of each code, which TFLM's QUANTIZE maps back."""
    mi = plan.model_input
    if mi is None:
        return inputs
    if mi.dtype == "UINT8":
        return (inputs.astype(np.int16) + 128).astype(np.uint8)
    real = np.float32(plan.input.scale) * (
        inputs.astype(np.float32) - np.float32(plan.input.zero_point)
    )
    return real.astype(np.float32)


def reference_outputs(
    model_bytes: bytes,
    plan: planmod.Plan,
    inputs: np.ndarray,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """TFLM's int8 values of the engine's output for int8 engine ``inputs`` [N, ...]: the
    model output itself, or (``--io`` float32/uint8 models) the int8 tensor before the
    output conversion, read from the interpreter."""
    n = len(inputs)
    if plan.model_input is None and plan.model_output is None:
        return TflmModel(model_bytes).run(inputs, progress).reshape(n, plan.output.size)
    tflm = TflmModel(model_bytes, preserve=True)
    got = tflm.run_tensors(
        model_feed(plan, inputs), [plan.input.index, plan.output.index], progress
    )
    if not np.array_equal(got[plan.input.index].reshape(inputs.shape), inputs):
        raise FirmwareExportError(
            "TFLM quantized the test inputs differently from the engine's "
            "int8 inputs; cannot make test vectors"
        )
    return got[plan.output.index].astype(np.int8).reshape(n, plan.output.size)


def export_model(
    model_bytes: bytes,
    *,
    model_name: str = "model.tflite",
    prefix: str = DEFAULT_PREFIX,
    n_vectors: int = DEFAULT_TEST_VECTORS,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    command: str | None = None,
    progress: Callable[[int], None] | None = None,
    graph: Graph | None = None,
    tool: str = f"firmware_export {__version__}",
    optimize: str = "speed",
) -> ExportResult:
    """Export ``model_bytes``. ``images``/``labels`` (raw uint8 MNIST test digits) feed the
    test vectors when the model takes digits; otherwise seeded random inputs are used.
    ``graph``: ``load_graph(model_bytes)`` when the caller has already read it. ``tool``
    (name and version) goes into every banner and export.json, so a caller such as the
    lenet-edge CLI names itself without this package importing it. ``optimize``: "speed" or
    "size" (``export-c --optimize``, see ``plan.OPTIMIZE_MODES``)."""
    check_prefix(prefix)
    if n_vectors < 1:
        raise FirmwareExportError("--test-vectors must be at least 1")
    if graph is None:
        graph = load_graph(model_bytes)
    plan = planmod.build_plan(graph, optimize)
    digest = sha256_bytes(model_bytes)
    command = command or f"lenet-edge export-c {model_name} --prefix {prefix}" + (
        f" --optimize {optimize}" if optimize != "speed" else ""
    )
    lines = [
        f"Generated by {tool} (export-c). Do not edit.",
        f"Source model: {model_name}, SHA-256 {digest}",
        f"Command: {command}",
    ]
    c_banner = make_banner(lines)
    hash_banner = make_banner(lines, style="hash")
    op_kinds = {op.index: op.kind for op in graph.ops}

    mnist = mnist_input(plan.input.shape, plan.input.scale, plan.input.zero_point)
    standalone = StandaloneWriter(plan, prefix, c_banner, mnist).render(op_kinds)

    arena = Arena(min_arena_size(model_bytes), f"{platform.machine() or 'this host'}")
    tflm_files = render_tflm(
        model_bytes,
        prefix,
        c_banner,
        graph.op_kinds,
        arena,
        plan.model_input or plan.input,
        plan.model_output or plan.output,
    )

    # Test vectors: TFLM's outputs are the reference.
    raw = None
    lab = None
    if images is not None and mnist_size(plan.input.shape) is not None:
        raw = np.asarray(images[:n_vectors], dtype=np.uint8)
        inputs = mnist_inputs(raw, plan.input.shape, plan.input.scale, plan.input.zero_point)
        lab = np.asarray(labels[:n_vectors], dtype=np.uint8) if labels is not None else None
        source = f"the first {len(raw)} MNIST test images"
    else:
        rng = np.random.default_rng(0)
        inputs = rng.integers(-128, 128, size=(n_vectors, *plan.input.shape[1:]), dtype=np.int8)
        source = f"{n_vectors} random inputs (numpy seed 0)"
    expected = reference_outputs(model_bytes, plan, inputs, progress)
    test_files = render_test(
        prefix,
        c_banner,
        hash_banner,
        inputs,
        expected,
        lab,
        raw if mnist is not None else None,
        source,
        sorted(standalone),
        optimize,
    )

    files: dict[str, bytes] = {"model.tflite": bytes(model_bytes)}
    for folder, group in (("standalone", standalone), ("tflm", tflm_files), ("test", test_files)):
        for name in sorted(group):
            files[f"{folder}/{name}"] = group[name].encode("utf-8")

    weights = planmod.weight_bytes(plan)
    report: dict[str, Any] = {
        "tool": tool,
        "command": command,
        "model": {"file": model_name, "sha256": digest, "bytes": len(model_bytes)},
        "prefix": prefix,
        "optimize": optimize,
        "ops": graph.op_kinds,
        "op_sequence": [op.kind for op in graph.ops],
        "folded_ops": [op_kinds[i] for i in plan.folded_ops],
        "input": {
            "shape": list(plan.input.shape),
            "scale": plan.input.scale,
            "zero_point": plan.input.zero_point,
            "size": plan.input.size,
        },
        "output": {
            "shape": list(plan.output.shape),
            "scale": plan.output.scale,
            "zero_point": plan.output.zero_point,
            "size": plan.output.size,
        },
        "model_interface": {
            "input_dtype": (plan.model_input or plan.input).dtype,
            "output_dtype": (plan.model_output or plan.output).dtype,
            "left_to_the_application": [op_kinds[i] for i in plan.stripped_ops],
            "note": "the engine's input and output are int8 (see input/output); conversions "
            "the model performs at its edges (--io float32/uint8) are not part of it",
        },
        "layers": [_layer_report(s, op_kinds) for s in plan.steps],
        "macs": plan.macs,
        "tflm_macs": plan.tflm_macs,
        "weight_bytes": {**weights, "total": sum(weights.values())},
        "scratch_size": plan.scratch_size,
        "tflm_arena": {
            "measured_bytes": arena.measured,
            "measured_on": arena.host,
            "margin_bytes": arena.margin,
            "kTensorArenaSize": arena.size,
            "note": "measured with the tflite-micro Python interpreter (64-bit pointers); a "
            "32-bit MCU needs less",
        },
        "quantize_mnist": mnist is not None,
        "test_vectors": {
            "count": len(inputs),
            "source": source,
            "tflm_correct": int((expected.argmax(axis=1) == lab).sum())
            if lab is not None
            else None,
        },
        "files": {path: sha256_bytes(data) for path, data in sorted(files.items())},
    }
    return ExportResult(files, report, plan)


def report_json(report: dict[str, Any]) -> bytes:
    """export.json bytes (sorted keys, stable)."""
    return (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_export(result: ExportResult, out_dir: str | Path) -> Path:
    """Write every file and export.json into ``out_dir``, which must not exist yet or be
    empty. Plain writes: a caller that needs all-or-nothing replacement of a previous
    export (the CLI) gives a temporary directory and swaps it in itself."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FirmwareExportError(f"{out} is not empty; give a new directory")
    for rel, data in result.files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (out / "export.json").write_bytes(report_json(result.report))
    return out
