"""FULLY_CONNECTED: weights interleaved in blocks of FC_ROWS rows (``packed_weights``), the
elementwise ops after it fused into one table."""

from __future__ import annotations

import numpy as np

from firmware_export import quantmath as qm
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import FullyConnectedOptions, Op
from firmware_export.plan.lower_common import (
    Lowering,
    acc_bound,
    act_name,
    fast_requant,
    fold_bias,
    load_bias,
    multipliers,
    scale,
    zp,
)
from firmware_export.plan.types import FullyConnectedStep


def lower_fc(p: Lowering, op: Op) -> list[int]:
    opt = op.options
    assert isinstance(opt, FullyConnectedOptions)
    g = p.g
    x, w_t, y = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    if opt.weights_format != 0:
        raise FirmwareExportError(f"{op.describe()}: shuffled weights format is not supported")
    w = np.asarray(w_t.data)
    if w.ndim != 2:
        raise FirmwareExportError(f"{op.describe()}: weights of rank {w.ndim}")
    n, k = int(w.shape[0]), int(w.shape[1])
    if x.size != k:
        raise FirmwareExportError(
            f"{op.describe()}: input of {x.size} values for {k} weights per row (batch must be 1)"
        )
    if y.size != n:
        raise FirmwareExportError(f"{op.describe()}: output of {y.size} values for {n} rows")
    bias = load_bias(g, op, n)
    zp_in, zp_out = zp(x), zp(y)
    mult, shift = multipliers(x, w_t, y, n, per_tensor_fc=True)
    act_min, act_max = qm.activation_range(act_name(opt.activation), scale(y), zp_out)
    folded = fold_bias(op, bias, w, zp_in)
    table, t_last, chain = p.elementwise_chain(op.outputs[0])
    name = p.name("fc")
    assert w_t.quant is not None
    step = FullyConnectedStep(
        name,
        "fully_connected",
        [op.index, *chain],
        p.buffer(op.inputs[0]),
        p.buffer(t_last),
        macs=n * k,
        tflm_macs=n * k,
        in_size=k,
        out_size=n,
        input_zero_point=zp_in,
        output_zero_point=zp_out,
        act_min=act_min,
        act_max=act_max,
        weights=w.astype(np.int8),
        bias=folded,
        multiplier=mult,
        shift=shift,
        table=table,
        per_channel=w_t.quant.per_channel,
    )
    step.fast = fast_requant(shift, zp_out, acc_bound(folded, w))
    step.scratch = 2 * step.in_padded  # the input as int16 pairs (DSP and SIMD paths)
    p.add(step, [op.inputs[0]], t_last)
    return [op.index, *chain]


# --- SOFTMAX ----------------------------------------------------------------------
