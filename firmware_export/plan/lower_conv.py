"""CONV_2D: the generic kernel's channel runs, or the tile convolution (``TilePlan``); the
elementwise ops and a non-overlapping pooling after it are fused."""

from __future__ import annotations

import numpy as np

from firmware_export import quantmath as qm
from firmware_export import tile
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import Conv2DOptions, Op, Pool2DOptions
from firmware_export.plan.lower_common import (
    Lowering,
    acc_bound,
    act_name,
    fast_requant,
    fold_bias,
    load_bias,
    multipliers,
    nhwc,
    pool_coverage,
    pool_geometry,
    pool_spec,
    scale,
    zp,
)
from firmware_export.plan.types import CONV_BLOCKS, ConvStep, PoolSpec, TilePlan


def tile_plan(
    step: ConvStep, w: np.ndarray, used: np.ndarray, folded: list[int]
) -> TilePlan | None:
    """The tile algorithm for ``step`` when it applies: stride 1, no dilation, fast
    requantization, and outputs in whole 2x2 blocks (a fused 2x2/2 pooling that covers its
    windows exactly, or no pooling and even output sizes). None otherwise."""
    if (step.stride_h, step.stride_w, step.dilation_h, step.dilation_w) != (1, 1, 1, 1):
        return None
    if step.fast is None or not step.patch_channels:
        return None
    q = step.pool
    if q is None:
        if step.conv_h % 2 or step.conv_w % 2:
            return None
        blocks_h, blocks_w = step.conv_h // 2, step.conv_w // 2
    else:
        square = (q.filter_h, q.filter_w, q.stride_h, q.stride_w, q.pad_top, q.pad_left)
        if square != (2, 2, 2, 2, 0, 0):
            return None
        if 2 * q.out_h > step.conv_h or 2 * q.out_w > step.conv_w:
            return None
        blocks_h, blocks_w = q.out_h, q.out_w
    shape = tile.TileShape(step.kernel_h, step.kernel_w)
    if (shape.rows - 1) * shape.width(1) + shape.kw > tile.LDRD_MAX_WORDS:
        return None  # a block would not reach its words with immediate offsets
    pc_index = {c: i for i, c in enumerate(step.patch_channels)}
    map_start, maps, words = [0], [], []
    for oc in range(step.out_c):
        for c in step.patch_channels:
            if used[oc, c]:
                maps.append(pc_index[c])
                words.append(tile.pair_weights(shape, w, oc, c))
        map_start.append(len(maps))
    n = len(step.patch_channels)
    dense = maps == list(range(n)) * step.out_c
    pairs = len(shape.pairs())
    weights = np.concatenate(words) if words else np.zeros(0, np.int32)
    return TilePlan(
        shape=shape,
        windows=1,
        blocks_h=blocks_h,
        blocks_w=blocks_w,
        map_start=map_start,
        maps=maps,
        weights=weights.reshape(len(maps), pairs),
        bias=[2 * b for b in folded],
        dense=dense,
    )


def lower_conv(p: Lowering, op: Op) -> list[int]:
    opt = op.options
    assert isinstance(opt, Conv2DOptions)
    g = p.g
    x, w_t, y = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    in_h, in_w, in_c = nhwc(x)
    conv_h, conv_w, out_c = nhwc(y)
    w = np.asarray(w_t.data)
    if w.ndim != 4 or w.shape[0] != out_c or w.shape[3] != in_c:
        raise FirmwareExportError(
            f"{op.describe()}: filter shape {list(w.shape)} does not "
            f"fit input {list(x.shape)} and output {list(y.shape)}"
        )
    kh, kw = int(w.shape[1]), int(w.shape[2])
    oh, ow, pad_t, pad_l = pool_geometry(
        opt.padding,
        in_h,
        in_w,
        kh,
        kw,
        opt.stride_h,
        opt.stride_w,
        opt.dilation_h,
        opt.dilation_w,
    )
    if (oh, ow) != (conv_h, conv_w):
        raise FirmwareExportError(
            f"{op.describe()}: output {conv_h}x{conv_w} does not "
            f"match {opt.padding.value} padding ({oh}x{ow})"
        )
    bias = load_bias(g, op, out_c)
    zp_in, zp_out = zp(x), zp(y)
    mult, shift = multipliers(x, w_t, y, out_c, per_tensor_fc=False)
    act_min, act_max = qm.activation_range(act_name(opt.activation), scale(y), zp_out)

    # Which input channels each output channel really uses (zero maps are skipped).
    used = np.any(w != 0, axis=(1, 2))  # [out_c, in_c]
    patch_channels = [c for c in range(in_c) if used[:, c].any()]
    pc_index = {c: i for i, c in enumerate(patch_channels)}
    taps = kh * kw
    run_start, run_offset, run_length = [0], [], []
    packed: list[np.ndarray] = []
    macs_per_position = 0
    for oc in range(out_c):
        chans = [c for c in patch_channels if used[oc, c]]
        i = 0
        while i < len(chans):
            j = i
            while j + 1 < len(chans) and pc_index[chans[j + 1]] == pc_index[chans[j]] + 1:
                j += 1
            run_offset.append(pc_index[chans[i]] * taps)
            run_length.append((j - i + 1) * taps)
            for c in chans[i : j + 1]:
                packed.append(w[oc, :, :, c].reshape(-1))
            macs_per_position += (j - i + 1) * taps
            i = j + 1
        run_start.append(len(run_offset))
    weights = np.concatenate(packed).astype(np.int8) if packed else np.zeros(0, np.int8)
    folded = fold_bias(op, bias, w.reshape(out_c, -1), zp_in)
    patch_bytes = -(-len(patch_channels) * taps // 4) * 4
    if len(patch_channels) * taps > 0xFFFF or len(run_offset) > 0xFFFF:
        raise FirmwareExportError(
            f"{op.describe()}: receptive field too large for the engine (more than 65535 values)"
        )

    t_last = op.outputs[0]
    ops = [op.index]
    table, t_last, chain = p.elementwise_chain(t_last)
    ops += chain
    pool: PoolSpec | None = None
    positions = conv_h * conv_w
    nxt = p.single_consumer(t_last)
    if nxt is not None and nxt.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        popt = nxt.options
        assert isinstance(popt, Pool2DOptions)
        if popt.stride_h >= popt.filter_h and popt.stride_w >= popt.filter_w:
            pool = pool_spec(g, nxt, conv_h, conv_w)
            positions = pool_coverage(pool, conv_h, conv_w)
            ops.append(nxt.index)
            t_last = nxt.outputs[0]
    name = p.name("conv")
    step = ConvStep(
        name,
        "conv",
        ops,
        p.buffer(op.inputs[0]),
        p.buffer(t_last),
        scratch=CONV_BLOCKS[p.optimize] * patch_bytes + 4 * out_c,
        macs=positions * macs_per_position,
        tflm_macs=conv_h * conv_w * out_c * taps * in_c,
        in_h=in_h,
        in_w=in_w,
        in_c=in_c,
        conv_h=conv_h,
        conv_w=conv_w,
        out_c=out_c,
        kernel_h=kh,
        kernel_w=kw,
        stride_h=opt.stride_h,
        stride_w=opt.stride_w,
        dilation_h=opt.dilation_h,
        dilation_w=opt.dilation_w,
        pad_top=pad_t,
        pad_left=pad_l,
        input_zero_point=zp_in,
        output_zero_point=zp_out,
        act_min=act_min,
        act_max=act_max,
        patch_channels=patch_channels,
        run_start=run_start,
        run_offset=run_offset,
        run_length=run_length,
        weights=weights,
        bias=folded,
        multiplier=mult,
        shift=shift,
        table=table,
        pool=pool,
        weight_shape=tuple(int(d) for d in w.shape),
        skipped_channels=int(out_c * in_c - used.sum()),
    )
    bound = acc_bound(folded, w.reshape(out_c, -1))
    step.fast = fast_requant(shift, zp_out, bound)
    # --optimize size keeps the int8 weights (the tile's doubled int16 pairs take more bytes).
    tp = tile_plan(step, w, used, folded) if p.optimize == "speed" else None
    if tp is not None:
        step.algo, step.tile = "tile", tp
        step.scratch = tp.scratch(len(patch_channels))
    p.add(step, [op.inputs[0]], t_last)
    return ops
