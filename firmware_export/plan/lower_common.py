"""What every op's lowering shares: TFLite geometry, quantization parameters (exactly as TFLM's
Prepare), elementwise tables, and the interface a lowering sees of the planner."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from firmware_export import quantmath as qm
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import Activation, Graph, Op, Padding, Pool2DOptions, Tensor
from firmware_export.plan.types import (
    ACC_LIMIT,
    FAST_ACC_LIMIT,
    Buffer,
    FastRequant,
    PoolSpec,
    Step,
    Table,
)


class Lowering(Protocol):
    """The planner as one op's lowering sees it."""

    g: Graph
    optimize: str  # an OPTIMIZE_MODES entry

    def buffer(self, t: int) -> Buffer: ...

    def add(self, step: Step, reads: list[int], writes: int) -> None: ...

    def name(self, kind: str) -> str: ...

    def single_consumer(self, t: int) -> Op | None: ...

    def elementwise_chain(self, t: int) -> tuple[Table | None, int, list[int]]: ...


def pool_geometry(
    padding: Padding,
    in_h: int,
    in_w: int,
    fh: int,
    fw: int,
    sh: int,
    sw: int,
    dh: int = 1,
    dw: int = 1,
) -> tuple[int, int, int, int]:
    """TFLite ``ComputePaddingHeightWidth``: (out_h, out_w, pad_top, pad_left)."""

    def out_size(image: int, filt: int, stride: int, dil: int) -> int:
        eff = (filt - 1) * dil + 1
        if padding is Padding.SAME:
            return (image + stride - 1) // stride
        return (image + stride - eff) // stride

    def pad(image: int, filt: int, stride: int, dil: int, out: int) -> int:
        eff = (filt - 1) * dil + 1
        total = (out - 1) * stride + eff - image
        return max(total, 0) // 2

    oh = out_size(in_h, fh, sh, dh)
    ow = out_size(in_w, fw, sw, dw)
    return oh, ow, pad(in_h, fh, sh, dh, oh), pad(in_w, fw, sw, dw, ow)


def nhwc(t: Tensor) -> tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise FirmwareExportError(
            f"{t.describe()} has shape {list(t.shape)}; expected NHWC with batch 1"
        )
    return t.shape[1], t.shape[2], t.shape[3]


def act_name(a: Activation) -> str:
    if a in (Activation.TANH, Activation.SIGN_BIT):
        raise FirmwareExportError(
            f"fused activation {a.value} is not supported for int8 (TFLM ignores it)"
        )
    return a.value


def scale(t: Tensor) -> float:
    assert t.quant is not None
    return t.quant.scale


def zp(t: Tensor) -> int:
    assert t.quant is not None
    return t.quant.zero_point


def acc_bound(folded: list[int], w2d: np.ndarray) -> int:
    """The largest |accumulator| any int8 input can give (bias folded in)."""
    if not folded:
        return 0
    w64 = np.abs(w2d.astype(np.int64)).sum(axis=1) * 128
    return int((np.abs(np.array(folded, dtype=np.int64)) + w64).max())


def fast_requant(shift: list[int], zero_point: int, bound: int) -> FastRequant | None:
    """The fast form of TFLM's requantization when it is exact for every channel: right
    shifts only, a doubled accumulator that fits an int32 and no overflow in the rounding."""
    if bound > FAST_ACC_LIMIT or not shift:
        return None
    rshift, rnd = [], []
    for s in shift:
        e = -s
        if not 1 <= e <= 31:
            return None
        r = (1 << (e - 1)) + zero_point * (1 << e)
        # |srdhm(acc, m)| <= |acc| <= bound; the sum before the shift must fit an int32.
        if bound + 1 + abs(r) > qm.INT32_MAX:
            return None
        rshift.append(e)
        rnd.append(r)
    return FastRequant(rshift, rnd)


def load_bias(g: Graph, op: Op, n: int) -> np.ndarray:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return np.zeros(n, dtype=np.int64)
    b = g.tensors[op.inputs[2]]
    data = np.asarray(b.data).reshape(-1).astype(np.int64)
    if data.size != n:
        raise FirmwareExportError(
            f"{op.describe()}: bias has {data.size} values for {n} output channels"
        )
    return data


def fold_bias(op: Op, bias: np.ndarray, w2d: np.ndarray, zp_in: int) -> list[int]:
    w64 = w2d.astype(np.int64)
    folded = bias - zp_in * w64.sum(axis=1)
    bound = np.abs(folded) + np.abs(w64).sum(axis=1) * 128
    if folded.size and int(bound.max()) > ACC_LIMIT:
        raise FirmwareExportError(
            f"{op.describe()}: the int32 accumulator could overflow (bound {int(bound.max())})"
        )
    return [int(v) for v in folded]


def multipliers(
    x: Tensor, w: Tensor, y: Tensor, n: int, per_tensor_fc: bool
) -> tuple[list[int], list[int]]:
    assert w.quant is not None
    scales = list(w.quant.scales)
    if len(scales) not in (1, n):
        raise FirmwareExportError(f"{w.describe()}: {len(scales)} scales for {n} channels")
    mult, shift = [], []
    for i in range(n):
        fs = scales[i] if len(scales) > 1 else scales[0]
        if per_tensor_fc and len(scales) == 1:
            real = qm.fc_per_tensor_multiplier(scale(x), fs, scale(y))
        else:
            real = qm.conv_multiplier(scale(x), fs, scale(y))
        m, s = qm.quantize_multiplier(real)
        if not -31 <= s <= 30:
            raise FirmwareExportError(f"{w.describe()}: requantization shift {s} out of range")
        mult.append(m)
        shift.append(s)
    return mult, shift


# --- POOL -------------------------------------------------------------------------


def elementwise_table(g: Graph, op: Op) -> Table:
    src = g.tensors[op.inputs[0]]
    dst = g.tensors[op.outputs[0]]
    if src.dtype != "INT8" or dst.dtype != "INT8":
        raise FirmwareExportError(
            f"{op.describe()}: {src.dtype} -> {dst.dtype}; only int8 -> int8 is supported"
        )
    values: list[int]
    if op.kind == "LOGISTIC":
        if zp(dst) != -128:
            raise FirmwareExportError(
                f"{op.describe()}: output zero point {zp(dst)}; TFLM requires -128"
            )
        p = qm.sigmoid_params(scale(src), zp(src))
        values = [qm.logistic_int8(x, p) for x in range(-128, 128)]
    elif op.kind == "TANH":
        p = qm.sigmoid_params(scale(src), zp(src))
        values = [qm.tanh_int8(x, p) for x in range(-128, 128)]
    elif op.kind == "RELU":
        values = qm.relu_int8_table(scale(src), zp(src), scale(dst), zp(dst))
    elif op.kind == "RELU6":
        values = qm.relu6_int8_table(scale(src), zp(src))
    elif op.kind == "QUANTIZE":
        values = qm.requantize_int8_table(scale(src), zp(src), scale(dst), zp(dst))
    else:  # pragma: no cover - guarded by ELEMENTWISE_OPS
        raise FirmwareExportError(f"{op.describe()} is not elementwise")
    return Table(values, [op.kind])


def pool_spec(g: Graph, op: Op, in_h: int, in_w: int) -> PoolSpec:
    opt = op.options
    assert isinstance(opt, Pool2DOptions)
    y = g.tensors[op.outputs[0]]
    oh, ow, pad_t, pad_l = pool_geometry(
        opt.padding, in_h, in_w, opt.filter_h, opt.filter_w, opt.stride_h, opt.stride_w
    )
    yh, yw, _ = nhwc(y)
    if (oh, ow) != (yh, yw):
        raise FirmwareExportError(
            f"{op.describe()}: output {yh}x{yw} does not match "
            f"{opt.padding.value} padding ({oh}x{ow})"
        )
    act_min, act_max = qm.activation_range(act_name(opt.activation), scale(y), zp(y))
    kind = "avg" if op.kind == "AVERAGE_POOL_2D" else "max"
    return PoolSpec(
        kind,
        opt.filter_h,
        opt.filter_w,
        opt.stride_h,
        opt.stride_w,
        pad_t,
        pad_l,
        oh,
        ow,
        act_min,
        act_max,
    )


def pool_coverage(p: PoolSpec, h: int, w: int) -> int:
    n = 0
    for py in range(p.out_h):
        y0 = py * p.stride_h - p.pad_top
        ys, ye = max(y0, 0), min(y0 + p.filter_h, h)
        for px in range(p.out_w):
            x0 = px * p.stride_w - p.pad_left
            xs, xe = max(x0, 0), min(x0 + p.filter_w, w)
            n += max(ye - ys, 0) * max(xe - xs, 0)
    return n
