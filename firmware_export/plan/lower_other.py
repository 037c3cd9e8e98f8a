"""The other ops: pooling that no convolution absorbed, int8 elementwise chains (one table
lookup) and SOFTMAX."""

from __future__ import annotations

import numpy as np

from firmware_export import quantmath as qm
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import Op, SoftmaxOptions
from firmware_export.plan.lower_common import (
    Lowering,
    elementwise_table,
    nhwc,
    pool_spec,
    scale,
    zp,
)
from firmware_export.plan.types import LutStep, PoolStep, SoftmaxStep


def lower_elementwise(p: Lowering, op: Op) -> list[int]:
    """A chain of int8 elementwise ops that no kernel absorbed: one table lookup."""
    lut = elementwise_table(p.g, op)
    more, last_t, ops = p.elementwise_chain(op.outputs[0])
    if more is not None:
        lut = lut.then(more)
    src = p.g.tensors[op.inputs[0]]
    name = p.name("lut")
    step = LutStep(
        name,
        "lut",
        [op.index, *ops],
        p.buffer(op.inputs[0]),
        p.buffer(last_t),
        size=src.size,
        table=lut,
    )
    p.add(step, [op.inputs[0]], last_t)
    return [op.index, *ops]


def lower_pool(p: Lowering, op: Op) -> list[int]:
    x = p.g.tensors[op.inputs[0]]
    in_h, in_w, c = nhwc(x)
    spec = pool_spec(p.g, op, in_h, in_w)
    name = p.name("pool")
    step = PoolStep(
        name,
        "pool",
        [op.index],
        p.buffer(op.inputs[0]),
        p.buffer(op.outputs[0]),
        in_h=in_h,
        in_w=in_w,
        channels=c,
        pool=spec,
    )
    p.add(step, [op.inputs[0]], op.outputs[0])
    return [op.index]


# --- FULLY_CONNECTED --------------------------------------------------------------


def lower_softmax(p: Lowering, op: Op) -> list[int]:
    opt = op.options
    assert isinstance(opt, SoftmaxOptions)
    x, y = p.g.tensors[op.inputs[0]], p.g.tensors[op.outputs[0]]
    if zp(y) != -128 or scale(y) != 1.0 / 256:
        raise FirmwareExportError(
            f"{op.describe()}: output scale {scale(y)!r} and zero "
            f"point {zp(y)}; TFLM's int8 softmax needs 1/256 and -128"
        )
    depth = x.shape[-1] if x.shape else 1
    if not 1 <= depth <= 4095:
        raise FirmwareExportError(f"{op.describe()}: depth {depth} out of 1..4095")
    params = qm.softmax_params(float(np.float32(opt.beta)), scale(x))
    step = SoftmaxStep(
        p.name("softmax"),
        "softmax",
        [op.index],
        p.buffer(op.inputs[0]),
        p.buffer(op.outputs[0]),
        rows=x.size // depth,
        depth=depth,
        # --optimize size: the kernel computes exp from these (1,024 B less, ~100 instructions
        # more per element).
        exp_table=qm.softmax_exp_table(params) if p.optimize == "speed" else None,
        input_multiplier=params.input_multiplier,
        input_left_shift=params.input_left_shift,
        diff_min=params.diff_min,
    )
    p.add(step, [op.inputs[0]], op.outputs[0])
    return [op.index]
