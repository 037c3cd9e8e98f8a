"""Every reason a typed graph cannot be exported, listed at once (one line for the user).

:func:`check_graph` checks the ops against what the engine supports, the quantization, the
dataflow, the operands and the geometry; :func:`find_boundary` finds the conversions a model
with float or uint8 I/O performs at its edges, which the engine leaves to the application.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_export.graph import (
    Conv2DOptions,
    Graph,
    Op,
    Pool2DOptions,
)

#: Ops the exporter lowers to engine steps.
COMPUTE_OPS = frozenset(
    {
        "CONV_2D",
        "AVERAGE_POOL_2D",
        "MAX_POOL_2D",
        "FULLY_CONNECTED",
        "LOGISTIC",
        "TANH",
        "RELU",
        "RELU6",
        "SOFTMAX",
        "QUANTIZE",
    }
)
#: Ops that only move or describe data; folded away at export time.
SHAPE_OPS = frozenset({"RESHAPE", "SHAPE", "STRIDED_SLICE", "PACK"})
SUPPORTED_OPS = COMPUTE_OPS | SHAPE_OPS


def _bad_scale(v: float) -> bool:
    return not math.isfinite(v) or v <= 0.0


@dataclass(frozen=True)
class Boundary:
    """Type conversions at the model's edges, left by ``--io float32`` / ``--io uint8``.

    The engine keeps an int8 interface: it starts after ``input_op`` (QUANTIZE from FLOAT32
    or UINT8 to INT8) and stops before ``output_op`` (DEQUANTIZE to FLOAT32, or QUANTIZE to
    UINT8). Either may be None.
    """

    input_op: Op | None = None
    output_op: Op | None = None

    @property
    def ops(self) -> list[Op]:
        return [op for op in (self.input_op, self.output_op) if op is not None]


def find_boundary(g: Graph) -> Boundary:
    """The conversions at the edges of ``g`` (see :class:`Boundary`)."""
    input_op = output_op = None
    if len(g.inputs) == 1:
        t = g.tensors[g.inputs[0]]
        users = g.consumers(t.index)
        if (
            t.dtype in ("FLOAT32", "UINT8")
            and len(users) == 1
            and users[0].kind == "QUANTIZE"
            and g.tensors[users[0].outputs[0]].dtype == "INT8"
        ):
            input_op = users[0]
    if len(g.outputs) == 1:
        t = g.tensors[g.outputs[0]]
        prod = g.producer(t.index)
        if (
            prod is not None
            and prod is not input_op
            and (
                (prod.kind == "DEQUANTIZE" and t.dtype == "FLOAT32")
                or (prod.kind == "QUANTIZE" and t.dtype == "UINT8")
            )
            and g.tensors[prod.inputs[0]].dtype == "INT8"
            and len(g.consumers(prod.inputs[0])) == 1
        ):
            output_op = prod
    return Boundary(input_op, output_op)


def _boundary_problems(g: Graph, b: Boundary) -> list[str]:
    problems = []
    for op in b.ops:
        src, dst = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
        uint8 = src if src.dtype == "UINT8" else dst if dst.dtype == "UINT8" else None
        if uint8 is None:
            continue
        int8 = dst if uint8 is src else src
        if uint8.quant is None or int8.quant is None:
            problems.append(f"{op.describe()}: missing quantization parameters")
        elif uint8.quant.scale != int8.quant.scale or (
            uint8.quant.zero_point - int8.quant.zero_point != 128
        ):
            problems.append(
                f"{op.describe()}: the uint8 <-> int8 conversion rescales; only the exact "
                "shift by 128 is supported at the model's edge (quantize with --io int8)"
            )
    return problems


def _dataflow_problems(g: Graph) -> list[str]:
    """Ops must come in execution order: each reads graph inputs, constants or the outputs of
    earlier ops, and each tensor is written once (by an op, never a constant or an input)."""
    written = set(g.inputs)
    problems: list[str] = []
    for op in g.ops:
        for t in op.inputs:
            if t >= 0 and t not in written and not g.tensors[t].is_const:
                problems.append(
                    f"{op.describe()} reads {g.tensors[t].describe()} before any op writes it "
                    "(ops out of order or a cycle)"
                )
        for t in op.outputs:
            if t in written or g.tensors[t].is_const:
                problems.append(
                    f"{op.describe()} writes {g.tensors[t].describe()}, which is "
                    f"{'a constant' if g.tensors[t].is_const else 'already written'}"
                )
            written.add(t)
        if problems:
            break
    for t in g.outputs:
        if not problems and t not in written and not g.tensors[t].is_const:
            problems.append(f"the model output {g.tensors[t].describe()} is never written")
    return problems


def check_graph(g: Graph) -> list[str]:
    """Every reason ``g`` cannot be exported (empty when it can), in a stable order."""
    problems: list[str] = _dataflow_problems(g) or _operand_problems(g)
    if problems:  # the checks below assume a well-formed graph
        return problems
    if len(g.inputs) != 1:
        problems.append(f"the model has {len(g.inputs)} inputs; export needs exactly 1")
    if len(g.outputs) != 1:
        problems.append(f"the model has {len(g.outputs)} outputs; export needs exactly 1")

    boundary = find_boundary(g)
    edge_ops = boundary.ops
    edge_tensors = {t for op in edge_ops for t in (*op.inputs, *op.outputs)} & set(
        (*g.inputs, *g.outputs)
    )
    unsupported = sorted(
        {op.kind for op in g.ops if op.kind not in SUPPORTED_OPS and op not in edge_ops}
    )
    if unsupported:
        problems.append(
            f"unsupported op{'s' if len(unsupported) > 1 else ''} {', '.join(unsupported)} "
            f"(supported: {', '.join(sorted(SUPPORTED_OPS))})"
        )
    problems += _boundary_problems(g, boundary)

    # Activation tensors: everything a compute op reads or writes that is not a constant.
    activations: list[int] = []
    for op in g.ops:
        if op in edge_ops or (op.kind not in COMPUTE_OPS and op.kind != "RESHAPE"):
            continue
        data_inputs = op.inputs[:1] if op.kind == "RESHAPE" else op.inputs
        for t in (*data_inputs, *op.outputs):
            if t >= 0 and not g.tensors[t].is_const and t not in activations:
                activations.append(t)
    for t in g.inputs:
        if t not in activations and t not in edge_tensors:
            activations.append(t)

    float_types = ("FLOAT32", "FLOAT16", "FLOAT64")
    float_ops = [
        op
        for op in g.ops
        if op not in edge_ops
        and op.kind in COMPUTE_OPS | {"DEQUANTIZE"}
        and any(t >= 0 and g.tensors[t].dtype in float_types for t in (*op.inputs, *op.outputs))
    ]
    if float_ops:
        first = float_ops[0]
        problems.append(
            f"float model: {len(float_ops)} op(s) compute in floating point (first: "
            f"{first.describe()}); quantize it to full int8 first (lenet-edge quantize)"
        )
    else:
        non_int8 = [g.tensors[t] for t in activations if g.tensors[t].dtype != "INT8"]
        if non_int8:
            listed = ", ".join(f"{t.describe()} is {t.dtype}" for t in non_int8[:4])
            more = f" and {len(non_int8) - 4} more" if len(non_int8) > 4 else ""
            problems.append(
                f"non-int8 activation tensor(s): {listed}{more}; export needs int8 "
                "activations (quantize with --io int8)"
            )

    for t_index in g.inputs:
        inp = g.tensors[t_index]
        if not inp.shape:
            problems.append(f"input {inp.describe()} has no static shape")
        elif inp.shape[0] != 1:
            problems.append(
                f"batch {inp.shape[0]} (input {inp.describe()} has shape "
                f"{list(inp.shape)}); export needs batch 1"
            )
    dynamic = [g.tensors[i] for i in activations if any(d <= 0 for d in g.tensors[i].shape)]
    if dynamic:
        problems.append(
            f"dynamic shape: {dynamic[0].describe()} has shape {list(dynamic[0].shape)}"
        )

    missing_q: list[str] = []
    bad_q: list[str] = []
    for t_index in activations:
        act = g.tensors[t_index]
        if act.dtype != "INT8":
            continue
        if act.quant is None:
            missing_q.append(act.describe())
            continue
        if len(act.quant.scales) != 1 or len(act.quant.zero_points) != 1:
            bad_q.append(
                f"{act.describe()} has {len(act.quant.scales)} scales (activations need 1)"
            )
        if any(_bad_scale(v) for v in act.quant.scales):
            bad_q.append(f"{act.describe()} has scale {act.quant.scales[0]!r}")
        if any(not -128 <= z <= 127 for z in act.quant.zero_points):
            bad_q.append(f"{act.describe()} has zero point {act.quant.zero_points[0]} outside int8")

    for op in g.ops:
        if op.kind not in ("CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
            continue
        w = g.tensors[op.inputs[1]]
        if not w.is_const:
            bad_q.append(f"{op.describe()}: weights {w.describe()} are not constant")
            continue
        if w.dtype != "INT8":
            if not float_ops:
                bad_q.append(f"{op.describe()}: weights {w.describe()} are {w.dtype}, not INT8")
            continue
        if w.quant is None:
            missing_q.append(w.describe())
            continue
        if any(_bad_scale(v) for v in w.quant.scales):
            bad = next(v for v in w.quant.scales if _bad_scale(v))
            bad_q.append(f"{op.describe()}: weights {w.describe()} have scale {bad!r}")
        if any(z != 0 for z in w.quant.zero_points):
            bad_q.append(
                f"{op.describe()}: weights {w.describe()} are not symmetric (zero point != 0)"
            )
        if w.quant.per_channel and (w.quant.axis != 0 or len(w.quant.scales) != w.shape[0]):
            bad_q.append(
                f"{op.describe()}: weights {w.describe()} are quantized along axis "
                f"{w.quant.axis} with {len(w.quant.scales)} scales; export needs one "
                "scale per output channel (axis 0)"
            )
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            b = g.tensors[op.inputs[2]]
            if not b.is_const:
                bad_q.append(f"{op.describe()}: bias {b.describe()} is not constant")
            elif b.dtype != "INT32" and not float_ops:
                bad_q.append(f"{op.describe()}: bias {b.describe()} is {b.dtype}, not INT32")
    problems += _geometry_problems(g)
    if missing_q:
        problems.append(
            f"missing quantization parameters on {', '.join(missing_q[:4])}"
            + (f" and {len(missing_q) - 4} more" if len(missing_q) > 4 else "")
        )
    problems.extend(bad_q)
    return problems


#: Ops whose output has the shape of their (single) input.
_SAME_SHAPE_OPS = frozenset(
    {"LOGISTIC", "TANH", "RELU", "RELU6", "SOFTMAX", "QUANTIZE", "DEQUANTIZE"}
)


def _operand_problems(g: Graph) -> list[str]:
    """What an op computes on must be an activation (not a constant), and the elementwise
    ops must keep the shape: a kernel (TFLM's too) sizes its loop by one and writes the other."""
    problems = []
    for op in g.ops:
        if op.kind not in COMPUTE_OPS | {"DEQUANTIZE"} or not op.inputs:
            continue
        x = g.tensors[op.inputs[0]]
        if x.is_const:
            problems.append(
                f"{op.describe()} computes on constant {x.describe()}; its input must be an "
                "activation"
            )
            continue
        if op.kind in _SAME_SHAPE_OPS:
            y = g.tensors[op.outputs[0]]
            if x.shape != y.shape:
                problems.append(
                    f"{op.describe()}: input shape {list(x.shape)} and output shape "
                    f"{list(y.shape)} differ"
                )
    return problems


#: TFLM's int8 LOGISTIC/TANH scale the input by ``scale * 2**27`` into Q4.27 with a left
#: shift; below this scale the shift would be negative, which those kernels do not handle.
MIN_SIGMOID_INPUT_SCALE = 2.0**-28


def _geometry_problems(g: Graph) -> list[str]:
    """Strides, dilations and pooling windows must be positive; LOGISTIC/TANH inputs need a
    scale their int8 kernels can represent."""
    problems = []
    for op in g.ops:
        o = op.options
        sizes: dict[str, tuple[int, int]] = {}
        if isinstance(o, Conv2DOptions):
            sizes = {"stride": (o.stride_h, o.stride_w), "dilation": (o.dilation_h, o.dilation_w)}
        elif isinstance(o, Pool2DOptions):
            sizes = {"stride": (o.stride_h, o.stride_w), "filter": (o.filter_h, o.filter_w)}
        for what, (h, w) in sizes.items():
            if h < 1 or w < 1:
                problems.append(f"{op.describe()}: {what} {h}x{w} (must be at least 1x1)")
        if op.kind in ("LOGISTIC", "TANH") and op.inputs and op.inputs[0] >= 0:
            q = g.tensors[op.inputs[0]].quant
            if q is not None and q.scales and 0 < q.scale < MIN_SIGMOID_INPUT_SCALE:
                problems.append(
                    f"{op.describe()}: input scale {q.scale!r} is below 2**-28, outside "
                    f"what TFLM's int8 {op.kind} supports"
                )
    return problems
