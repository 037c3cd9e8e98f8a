"""Convolutions as C: the generic kernel's parameter block, or a *tile* layer's own function
in ``<prefix>_layers.c`` (straight-line 2x2 blocks written by :mod:`firmware_export.tile`, the
Cortex-M DSP and portable paths) with its x86 version in ``<prefix>_host_simd.c``. Only
syntax: the plan has decided the algorithm, the constants and the memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from firmware_export import tile
from firmware_export.csyntax import c_int
from firmware_export.emit.arrays import Field, clamp_table, shape_text
from firmware_export.plan import ConvStep

if TYPE_CHECKING:
    from firmware_export.emit.standalone import StandaloneWriter


def simd_context(
    simd: tile.Simd, s: ConvStep, width: int, n_maps: int, lanes: int, rows: bool
) -> dict[str, object]:
    """What the x86 macros of conv_tile.c.j2 need for one vector width."""
    assert s.tile is not None
    shape = s.tile.shape
    vectors = -(-s.out_c // simd.lanes)
    nq = -(-2 * s.tile.windows // simd.lanes)
    return {
        "lanes": simd.lanes,
        "T": simd.T,
        "F": simd.F,
        "mask_t": simd.mask_t,
        "sat": simd.sat,
        "requant": simd.requant,
        "lookup": simd.lookup,
        "store": simd.store,
        "mask": simd.mask,
        "mask_n": simd.mask_n,
        "maskload": simd.maskload,
        "gather4": simd.gather4,
        "swap_pairs": simd.swap_pairs,
        "store_even": simd.store_even,
        "vectors": vectors,
        "group": tile.x86_group(vectors, simd.lanes),
        "nq": nq,
        "rows": tile.rows_x86(shape, width, nq, simd) if rows else [],
        "block": [] if rows else tile.block_x86(shape, width, vectors, lanes, simd, n_maps),
    }


def fill_code(s: ConvStep, width: int, prefix: str) -> tuple[list[str], list[str]]:
    """Statements filling one tile column (all rows) of one input channel: from ``q`` (the
    column's top input, all rows inside the image) and with bounds checks. In scope: ``col``
    (the tile word of row 0), ``y0``, ``x``, ``ch``, ``input``."""
    assert s.tile is not None
    shape = s.tile.shape
    row = s.in_w * s.in_c
    at = f"{prefix}_{s.name}_tile_at"
    pack = f"{prefix}_pack16"

    def body(value: list[str], right: list[str]) -> list[str]:
        lines = [f"const int32_t v{r} = {value[r]};" for r in range(shape.kh + 1)]
        for r in range(shape.kv):
            lines.append(f"col[{r * width}] = {pack}(v{r}, v{r + 1});")
        if shape.kh % 2:
            lines.append(f"const int32_t h0 = {right[0]};")
            lines.append(f"const int32_t h1 = {right[1]};")
            lines.append(f"col[{shape.kv * width}] = {pack}(v{shape.kh - 1}, h0);")
            lines.append(f"col[{(shape.kv + 1) * width}] = {pack}(v{shape.kh}, h1);")
        return lines

    kh = shape.kh
    fast = body(
        [f"q[{r * row}]" for r in range(kh + 1)],
        [f"q[{(kh - 1) * row + s.in_c}]", f"q[{kh * row + s.in_c}]"],
    )
    slow = body(
        [f"{at}(input, y0 + {r}, x, ch)" for r in range(kh + 1)],
        [f"{at}(input, y0 + {kh - 1}, x + 1, ch)", f"{at}(input, y0 + {kh}, x + 1, ch)"],
    )
    return fast, slow


def add_tile_conv(wr: StandaloneWriter, s: ConvStep) -> None:
    tp = s.tile
    assert tp is not None and s.fast is not None
    shape = tp.shape
    n_maps = len(s.patch_channels)
    width = tp.width
    map_words = shape.rows * width
    fn = wr.n(f"{s.name}_tile")
    wr.n(f"{s.name}_tile_at")
    wr.n(f"{s.name}_tile_fill")
    wr.n(f"{s.name}_tile_x86")
    w = wr.array(
        "int32_t",
        f"{s.name}_weights",
        tp.weights.reshape(-1).tolist(),
        f"{s.name} weights as doubled int16 pairs of taps (low half first), "
        f"[{len(tp.maps)} (output channel, used input channel)][{tp.weights.shape[1]} "
        f"pairs] of the {shape_text(s.weight_shape)} OHWI filter ({s.skipped_channels} "
        "all-zero input maps skipped)",
        8,
    )
    rq = wr.array(
        "int32_t",
        f"{s.name}_requant",
        [
            v
            for c in range(s.out_c)
            for v in (tp.bias[c], s.multiplier[c], s.fast.round[c], s.fast.rshift[c])
        ],
        f"{s.name} per output channel [{s.out_c}]: bias with the input zero point "
        f"({s.input_zero_point}) folded in, doubled; requantization multiplier (Q0.31); "
        f"rounding + output zero point ({s.output_zero_point}) << shift; right shift",
        4,
    )
    identity = s.patch_channels == list(range(s.in_c))
    if identity:
        channel_expr = "m"
    else:
        pc = wr.array(
            "uint16_t",
            f"{s.name}_channels",
            s.patch_channels,
            f"{s.name} input channels with a non-zero weight [{n_maps}]",
        )
        channel_expr = f"(int32_t){pc}[m]"
    map_offset, map_type, map_end = "", "uint16_t", "0xFFFF"
    if not tp.dense:
        # Each output channel's used input maps as tile offsets (words), ended by a marker:
        # the kernel walks one pointer through the list, channel after channel.
        offsets: list[int] = []
        for oc in range(s.out_c):
            offsets += [
                tp.maps[k] * map_words for k in range(tp.map_start[oc], tp.map_start[oc + 1])
            ]
            offsets.append(-1)
        wide = max(offsets) >= 0xFFFF
        map_type, map_end = ("int32_t", "-1") if wide else ("uint16_t", "0xFFFF")
        map_offset = wr.array(
            map_type,
            f"{s.name}_map_offset",
            [v if wide or v >= 0 else 0xFFFF for v in offsets],
            f"{s.name} tile offset (words) of each used input map, output channel after output "
            f"channel, each channel's list ended by {map_end} [{len(tp.maps)} + {s.out_c}]",
        )
    # x86: the strip's positions as lanes when the strip is wide and there is one input
    # channel (and pooling), reading the portable weights; the output channels as lanes
    # otherwise, with weights of their own.
    x86_rows = n_maps == 1 and tp.windows >= 4 and s.pool is not None
    lanes = -(-s.out_c // 16) * 16
    w_x86 = ""
    if not x86_rows:
        x86 = np.zeros((n_maps, tp.weights.shape[1], lanes), np.int64)
        for oc in range(s.out_c):
            for k in range(tp.map_start[oc], tp.map_start[oc + 1]):
                x86[tp.maps[k], :, oc] = tp.weights[k]
        w_x86 = wr.array(
            "int32_t",
            f"{s.name}_weights_x86",
            x86.reshape(-1).tolist(),
            f"{s.name} weights for the x86 AVX2 path: [{n_maps} input channels]"
            f"[{tp.weights.shape[1]} pairs][{lanes} output channels, zero padded]",
            8,
            guard=f"{wr.P}_X86_WEIGHTS",
        )
    lut = clamp_table(s.table, s.act_min, s.act_max)
    table = wr.table(s, lut) if lut else ""
    q = s.pool
    pool_clamp = q is not None and (q.act_min, q.act_max) != (-128, 127)
    fill_fast, fill_slow = fill_code(s, width, wr.p)
    # The portable path's packed tile (tile.fill_packed), when its sums are exact.
    packed = tile.packed_fits(tp.weights, tp.map_start)
    low_direct = packed and tile.low_lane_fits(tp.weights, tp.map_start, tp.bias)
    fill_packed_fast: list[str] = []
    fill_packed_slow: list[str] = []
    if packed:
        row = s.in_w * s.in_c
        at = f"{wr.p}_{s.name}_tile_at"
        fill_packed_fast = tile.fill_packed(
            shape, width, wr.p, [f"q[{r * row}]" for r in range(shape.kh + 1)]
        )
        fill_packed_slow = tile.fill_packed(
            shape, width, wr.p, [f"{at}(input, y0 + {r}, x, ch)" for r in range(shape.kh + 1)]
        )
    context = {
        "name": s.name,
        "fn": fn,
        "describe": f"{s.kernel_h}x{s.kernel_w} kernel, {s.in_c} -> {s.out_c} channels, "
        f"{tp.blocks_h}x{tp.blocks_w} blocks of 2x2 outputs, {tp.windows} per strip",
        "in_h": s.in_h,
        "in_w": s.in_w,
        "in_c": s.in_c,
        "kh": shape.kh,
        "kw": shape.kw,
        "kv": shape.kv,
        "rows": shape.rows,
        "has_h": shape.kh % 2 == 1,
        "h_extra": 1 if shape.kh % 2 else 0,
        "width": width,
        "windows": tp.windows,
        # Strips narrower than a row share kw - 1 columns with the next one: copying them over
        # costs a load and a store a word, filling them again about four instructions.
        "slide": tp.windows < tp.blocks_w and shape.kw > 1,
        # One strip per block row: the packed tile of the next block row is this one's moved up
        # two rows plus two new rows (the portable path; the DSP tile's last rows pair
        # horizontally).
        "vslide": packed and tp.windows == tp.blocks_w and shape.kh >= 3,
        "row": s.in_w * s.in_c,
        "blocks_h": tp.blocks_h,
        "blocks_w": tp.blocks_w,
        "pad_top": s.pad_top,
        "pad_left": s.pad_left,
        "zp_in": c_int(s.input_zero_point),
        "out_c": s.out_c,
        "conv_w": s.conv_w,
        "n_maps": n_maps,
        "map_words": map_words,
        "npairs": tp.weights.shape[1],
        "channel_expr": channel_expr,
        "dense": tp.dense,
        "map_offset": map_offset,
        "map_type": map_type,
        "map_end": map_end,
        "weights": w,
        "rq": rq,
        "table": table,
        "pool": q.kind if q else None,
        "pool_clamp": pool_clamp,
        "pool_min": q.act_min if q else -128,
        "pool_max": q.act_max if q else 127,
        "fill_fast": fill_fast,
        "fill_slow": fill_slow,
        "block_dsp": tile.block_dsp(shape, width, wr.p),
        "block_portable": tile.block_portable(shape, width),
        "packed": packed,
        "block_packed64": tile.block_packed64(shape, width, wr.p) if packed else [],
        "block_packed_v6m": (
            tile.block_packed_v6m(shape, width, wr.p, low_direct) if packed else []
        ),
        "low_direct": low_direct,
        "fill_packed_fast": fill_packed_fast,
        "fill_packed_slow": fill_packed_slow,
        "x86_rows": x86_rows,
        "lanes": lanes,
        "y": simd_context(tile.Simd(8, wr.p), s, width, n_maps, lanes, x86_rows),
        "z": simd_context(tile.Simd(16, wr.p), s, width, n_maps, lanes, x86_rows),
        "weights_x86": w_x86,
    }
    wr.tiles.append(context)
    wr.tile_functions.append({"name": s.name, "fn": fn, "scratch": s.scratch})
    wr.layer(
        s,
        "",
        [],
        f"{fn}({wr.buf(s.src)}, {wr.buf(s.dst)}, arena + {s.scratch_offset})",
    )


def add_conv(wr: StandaloneWriter, s: ConvStep) -> None:
    if s.algo == "tile":
        add_tile_conv(wr, s)
        return
    wr.generic_conv = True
    oc, kh, kw = s.out_c, s.kernel_h, s.kernel_w
    dense = int(np.prod(s.weight_shape))
    w = wr.array(
        "int8_t",
        f"{s.name}_weights",
        s.weights.tolist(),
        f"{s.name} weights: {oc} output channels, each a list of runs over "
        f"[used input channel][{kh}][{kw}]; {s.weights.size} of {dense} values "
        f"of the {shape_text(s.weight_shape)} OHWI filter ({s.skipped_channels} "
        "all-zero input maps skipped)",
    )
    b = wr.array(
        "int32_t",
        f"{s.name}_bias",
        s.bias,
        f"{s.name} bias [{oc}], input zero point ({s.input_zero_point}) folded in",
        8,
    )
    m = wr.array(
        "int32_t",
        f"{s.name}_multiplier",
        s.multiplier,
        f"{s.name} requantization multipliers [{oc}], Q0.31",
        8,
    )
    sh = wr.array(
        "int8_t",
        f"{s.name}_shift",
        s.fast.rshift if s.fast is not None else s.shift,
        f"{s.name} requantization "
        + ("right shifts" if s.fast is not None else "shifts (TFLM, left if > 0)")
        + f" [{oc}]",
        16,
    )
    pc = wr.array(
        "uint16_t",
        f"{s.name}_patch_channels",
        s.patch_channels,
        f"{s.name} input channels gathered into the patch [{len(s.patch_channels)}]",
    )
    rs = wr.array(
        "uint16_t",
        f"{s.name}_run_start",
        s.run_start,
        f"{s.name} first run of each output channel [{oc} + 1]",
    )
    ro = wr.array(
        "uint16_t",
        f"{s.name}_run_offset",
        s.run_offset,
        f"{s.name} patch offset of each run [{len(s.run_offset)}]",
    )
    rl = wr.array(
        "uint16_t",
        f"{s.name}_run_length",
        s.run_length,
        f"{s.name} length of each run [{len(s.run_length)}]",
    )
    lut = wr.table(s, s.table)
    fields = [
        Field(f"{s.in_h}, {s.in_w}, {s.in_c}", "in_h, in_w, in_c"),
        Field(f"{s.conv_h}, {s.conv_w}, {s.out_c}", "conv_h, conv_w, out_c"),
        Field(f"{kh}, {kw}", "kernel_h, kernel_w"),
        Field(f"{s.stride_h}, {s.stride_w}", "stride_h, stride_w"),
        Field(f"{s.dilation_h}, {s.dilation_w}", "dilation_h, dilation_w"),
        Field(f"{s.pad_top}, {s.pad_left}", "pad_top, pad_left"),
        Field(c_int(s.input_zero_point), "input_zero_point"),
        Field(c_int(s.output_zero_point), "output_zero_point"),
        Field(f"{s.act_min}, {s.act_max}", "act_min, act_max"),
        Field(str(len(s.patch_channels)), "n_patch_channels"),
        Field(pc, "patch_channels"),
        Field(rs, "run_start"),
        Field(ro, "run_offset"),
        Field(rl, "run_length"),
        Field(w, "weights"),
        Field(b, "bias"),
        Field("1" if s.fast is not None else "0", "fast"),
        Field(m, "multiplier"),
        Field(sh, "shift"),
        Field(lut, "lut"),
        Field(wr.pool_init(s.pool), "pool: kind, filter, stride, pad, out, act"),
    ]
    wr.layer(
        s,
        "conv_t",
        fields,
        f"{wr.n('conv_s8')}(&{wr.n(s.name)}, {wr.buf(s.src)}, "
        f"{wr.buf(s.dst)}, arena + {s.scratch_offset})",
    )
