"""Render a :class:`~firmware_export.plan.Plan` as the standalone C library.

The writer only spells out what the plan decided: arrays, parameter blocks in the order of
the C structs, and the call sequence. Kernel sources are fixed templates (one kernel per
file, no model data: their parameters come from the caller) instantiated for the prefix. A
convolution planned as a *tile* convolution gets its own function in ``<prefix>_layers.c``,
with the layer's dimensions as constants and the straight-line code of one 2x2 block written
by ``firmware_export.tile`` (Cortex-M DSP extension and portable C); its x86 AVX2 / AVX-512
version, like the fully connected kernel's, is in ``<prefix>_host_simd.c``, which only x86
builds compile to code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_export import tile
from firmware_export.csyntax import Names, c_float, c_int, c_values, render
from firmware_export.mnist import MnistInput
from firmware_export.plan import (
    ARENA_ALIGN,
    CONV_BLOCK,
    FC_ROWS,
    Buffer,
    ConvStep,
    FullyConnectedStep,
    LutStep,
    Plan,
    PoolSpec,
    PoolStep,
    SoftmaxStep,
    Step,
    Table,
)

ARRAY_ALIGN = 16

KERNEL_FILES = {
    "conv": "conv_s8.c.j2",
    "fully_connected": "fully_connected_s8.c.j2",
    "pool": "pool_s8.c.j2",
    "lut": "lut_s8.c.j2",
    "softmax": "softmax_s8.c.j2",
}


@dataclass
class Array:
    ctype: str
    name: str
    values: list[int]
    comment: str
    per_line: int = 16
    guard: str = ""  # a preprocessor condition the array is compiled under ("" = always)

    @property
    def count(self) -> int:
        return max(len(self.values), 1)

    def as_context(self) -> dict[str, object]:
        return {
            "ctype": self.ctype,
            "name": self.name,
            "count": self.count,
            "comment": self.comment,
            "body": c_values(self.values, self.per_line),
            "guard": self.guard,
        }


@dataclass
class Field:
    value: str
    comment: str


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _simd_context(
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


def _clamp_table(table: Table | None, lo: int, hi: int) -> Table | None:
    """The activation table with the activation clamp folded in (the tile kernel saturates to
    int8 and looks up); None when there is neither."""
    if table is None and (lo, hi) == (-128, 127):
        return None
    base = table.values if table is not None else list(range(-128, 128))
    ops = [] if (lo, hi) == (-128, 127) else [f"clamp [{lo}, {hi}]"]
    ops += table.ops if table is not None else []
    return Table([base[min(max(v, lo), hi) + 128] for v in range(-128, 128)], ops)


def _fill_code(s: ConvStep, width: int, prefix: str) -> tuple[list[str], list[str]]:
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


class StandaloneWriter:
    """Collects arrays and parameter blocks for one plan, then renders every file."""

    def __init__(self, plan: Plan, prefix: str, banner: str, mnist: MnistInput | None) -> None:
        self.plan = plan
        self.n = Names(prefix)
        self.p = prefix
        self.P = prefix.upper()
        self.banner = banner
        self.mnist = mnist
        self.arrays: list[Array] = []
        self.layers: list[dict[str, object]] = []
        self.calls: list[dict[str, str]] = []
        self.op_names: dict[int, str] = {}
        self.tiles: list[dict[str, object]] = []
        self.tile_functions: list[dict[str, object]] = []
        self.generic_conv = False

    # --- helpers -----------------------------------------------------------------------

    def array(
        self,
        ctype: str,
        suffix: str,
        values: list[int],
        comment: str,
        per_line: int = 16,
        guard: str = "",
    ) -> str:
        name = self.n(suffix)
        self.arrays.append(Array(ctype, name, [int(v) for v in values], comment, per_line, guard))
        return name

    def table(self, step: Step, table: Table | None) -> str:
        if table is None:
            return "NULL"
        return self.array(
            "int8_t",
            f"{step.name}_table",
            [*table.values, 0, 0, 0, 0],
            f"{step.name} activation table ({' then '.join(table.ops)}), indexed by x + 128 "
            "(and 4 bytes of padding for 32-bit gathers)",
        )

    def buf(self, b: Buffer) -> str:
        if b.location == "input":
            return "input"
        if b.location == "output":
            return "output"
        return f"arena + {b.offset}" if b.offset else "arena"

    def pool_init(self, q: PoolSpec | None) -> str:
        if q is None:
            kind = self.n.macro("POOL_NONE")
            return "{ " + kind + ", 1, 1, 1, 1, 0, 0, 0, 0, -128, 127 }"
        kind = self.n.macro("POOL_AVG" if q.kind == "avg" else "POOL_MAX")
        vals = [
            q.filter_h,
            q.filter_w,
            q.stride_h,
            q.stride_w,
            q.pad_top,
            q.pad_left,
            q.out_h,
            q.out_w,
            q.act_min,
            q.act_max,
        ]
        return "{ " + ", ".join([kind, *(c_int(v) for v in vals)]) + " }"

    def describe_ops(self, step: Step) -> str:
        kinds = [self.kind_of(i) for i in step.ops]
        return " + ".join(kinds) if kinds else step.kind

    def kind_of(self, op_index: int) -> str:
        return self.op_names.get(op_index, f"op{op_index}")

    # --- steps -------------------------------------------------------------------------

    def add_tile_conv(self, s: ConvStep) -> None:
        tp = s.tile
        assert tp is not None and s.fast is not None
        shape = tp.shape
        n_maps = len(s.patch_channels)
        width = tp.width
        map_words = shape.rows * width
        fn = self.n(f"{s.name}_tile")
        self.n(f"{s.name}_tile_at")
        self.n(f"{s.name}_tile_fill")
        self.n(f"{s.name}_tile_x86")
        w = self.array(
            "int32_t",
            f"{s.name}_weights",
            tp.weights.reshape(-1).tolist(),
            f"{s.name} weights as doubled int16 pairs of taps (low half first), "
            f"[{len(tp.maps)} (output channel, used input channel)][{tp.weights.shape[1]} "
            f"pairs] of the {_shape(s.weight_shape)} OHWI filter ({s.skipped_channels} "
            "all-zero input maps skipped)",
            8,
        )
        rq = self.array(
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
            pc = self.array(
                "uint16_t",
                f"{s.name}_channels",
                s.patch_channels,
                f"{s.name} input channels with a non-zero weight [{n_maps}]",
            )
            channel_expr = f"(int32_t){pc}[m]"
        map_start = map_offset = ""
        if not tp.dense:
            map_start = self.array(
                "uint16_t",
                f"{s.name}_map_start",
                tp.map_start,
                f"{s.name} first entry of each output channel in {s.name}_map_offset "
                f"[{s.out_c} + 1]",
            )
            offsets = [k * map_words for k in tp.maps]
            map_offset = self.array(
                "uint16_t" if max(offsets, default=0) <= 0xFFFF else "int32_t",
                f"{s.name}_map_offset",
                offsets,
                f"{s.name} tile offset (words) of each (output channel, used input channel) "
                f"[{len(offsets)}]",
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
            w_x86 = self.array(
                "int32_t",
                f"{s.name}_weights_x86",
                x86.reshape(-1).tolist(),
                f"{s.name} weights for the x86 AVX2 path: [{n_maps} input channels]"
                f"[{tp.weights.shape[1]} pairs][{lanes} output channels, zero padded]",
                8,
                guard=f"{self.P}_X86_WEIGHTS",
            )
        lut = _clamp_table(s.table, s.act_min, s.act_max)
        table = self.table(s, lut) if lut else ""
        q = s.pool
        pool_clamp = q is not None and (q.act_min, q.act_max) != (-128, 127)
        fill_fast, fill_slow = _fill_code(s, width, self.p)
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
            "map_start": map_start,
            "map_offset": map_offset,
            "weights": w,
            "rq": rq,
            "table": table,
            "pool": q.kind if q else None,
            "pool_clamp": pool_clamp,
            "pool_min": q.act_min if q else -128,
            "pool_max": q.act_max if q else 127,
            "fill_fast": fill_fast,
            "fill_slow": fill_slow,
            "block_dsp": tile.block_dsp(shape, width, self.p),
            "block_portable": tile.block_portable(shape, width),
            "x86_rows": x86_rows,
            "lanes": lanes,
            "y": _simd_context(tile.Simd(8, self.p), s, width, n_maps, lanes, x86_rows),
            "z": _simd_context(tile.Simd(16, self.p), s, width, n_maps, lanes, x86_rows),
            "weights_x86": w_x86,
        }
        self.tiles.append(context)
        self.tile_functions.append({"name": s.name, "fn": fn, "scratch": s.scratch})
        self.layer(
            s,
            "",
            [],
            f"{fn}({self.buf(s.src)}, {self.buf(s.dst)}, arena + {s.scratch_offset})",
        )

    def add_conv(self, s: ConvStep) -> None:
        if s.algo == "tile":
            self.add_tile_conv(s)
            return
        self.generic_conv = True
        oc, kh, kw = s.out_c, s.kernel_h, s.kernel_w
        dense = int(np.prod(s.weight_shape))
        w = self.array(
            "int8_t",
            f"{s.name}_weights",
            s.weights.tolist(),
            f"{s.name} weights: {oc} output channels, each a list of runs over "
            f"[used input channel][{kh}][{kw}]; {s.weights.size} of {dense} values "
            f"of the {_shape(s.weight_shape)} OHWI filter ({s.skipped_channels} "
            "all-zero input maps skipped)",
        )
        b = self.array(
            "int32_t",
            f"{s.name}_bias",
            s.bias,
            f"{s.name} bias [{oc}], input zero point ({s.input_zero_point}) folded in",
            8,
        )
        m = self.array(
            "int32_t",
            f"{s.name}_multiplier",
            s.multiplier,
            f"{s.name} requantization multipliers [{oc}], Q0.31",
            8,
        )
        sh = self.array(
            "int32_t",
            f"{s.name}_shift",
            s.shift,
            f"{s.name} requantization shifts [{oc}] (left if > 0)",
            16,
        )
        pc = self.array(
            "uint16_t",
            f"{s.name}_patch_channels",
            s.patch_channels,
            f"{s.name} input channels gathered into the patch [{len(s.patch_channels)}]",
        )
        rs = self.array(
            "uint16_t",
            f"{s.name}_run_start",
            s.run_start,
            f"{s.name} first run of each output channel [{oc} + 1]",
        )
        ro = self.array(
            "uint16_t",
            f"{s.name}_run_offset",
            s.run_offset,
            f"{s.name} patch offset of each run [{len(s.run_offset)}]",
        )
        rl = self.array(
            "uint16_t",
            f"{s.name}_run_length",
            s.run_length,
            f"{s.name} length of each run [{len(s.run_length)}]",
        )
        lut = self.table(s, s.table)
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
            Field(m, "multiplier"),
            Field(sh, "shift"),
            Field(lut, "lut"),
            Field(self.pool_init(s.pool), "pool: kind, filter, stride, pad, out, act"),
        ]
        self.layer(
            s,
            "conv_t",
            fields,
            f"{self.n('conv_s8')}(&{self.n(s.name)}, {self.buf(s.src)}, "
            f"{self.buf(s.dst)}, arena + {s.scratch_offset})",
        )

    def add_fc(self, s: FullyConnectedStep) -> None:
        w = self.array(
            "int8_t",
            f"{s.name}_weights",
            s.packed_weights().tolist(),
            f"{s.name} weights [{s.out_size}][{s.in_size}] in blocks of {FC_ROWS} rows "
            f"([{s.rows_padded // FC_ROWS}][{s.in_padded // 4}][{FC_ROWS}][4], zero padded)",
        )
        b = self.array(
            "int32_t",
            f"{s.name}_bias",
            s.bias,
            f"{s.name} bias [{s.out_size}], input zero point ({s.input_zero_point}) folded in",
            8,
        )
        how = "per channel" if s.per_channel else "per tensor, repeated"
        m = self.array(
            "int32_t",
            f"{s.name}_multiplier",
            s.multiplier,
            f"{s.name} requantization multipliers [{s.out_size}] ({how}), Q0.31",
            8,
        )
        if s.fast is not None:
            sh = self.array(
                "int32_t",
                f"{s.name}_shift",
                s.fast.rshift,
                f"{s.name} requantization right shifts [{s.out_size}]",
                16,
            )
            rnd = self.array(
                "int32_t",
                f"{s.name}_round",
                s.fast.round,
                f"{s.name} rounding + output zero point ({s.output_zero_point}) << shift "
                f"[{s.out_size}]",
                8,
            )
        else:
            sh = self.array(
                "int32_t",
                f"{s.name}_shift",
                s.shift,
                f"{s.name} requantization shifts [{s.out_size}]",
                16,
            )
            rnd = "NULL"
        lut = self.table(s, s.table)
        fields = [
            Field(str(s.in_size), "in_size"),
            Field(str(s.in_padded), "in_padded"),
            Field(str(s.out_size), "out_size"),
            Field(c_int(s.output_zero_point), "output_zero_point"),
            Field(f"{s.act_min}, {s.act_max}", "act_min, act_max"),
            Field(w, "weights"),
            Field(b, "bias"),
            Field(m, "multiplier"),
            Field(sh, "shift"),
            Field(rnd, "round"),
            Field(lut, "lut"),
        ]
        self.layer(
            s,
            "fully_connected_t",
            fields,
            f"{self.n('fully_connected_s8')}(&{self.n(s.name)}, {self.buf(s.src)}, "
            f"{self.buf(s.dst)}, arena + {s.scratch_offset})",
        )

    def add_pool(self, s: PoolStep) -> None:
        fields = [
            Field(f"{s.in_h}, {s.in_w}, {s.channels}", "in_h, in_w, channels"),
            Field(self.pool_init(s.pool), "pool: kind, filter, stride, pad, out, act"),
        ]
        self.layer(
            s,
            "pool_layer_t",
            fields,
            f"{self.n('pool_s8')}(&{self.n(s.name)}, {self.buf(s.src)}, {self.buf(s.dst)})",
        )

    def add_lut(self, s: LutStep) -> None:
        t = self.table(s, s.table)
        fields = [Field(str(s.size), "size"), Field(t, "table")]
        self.layer(
            s,
            "lut_t",
            fields,
            f"{self.n('lut_s8')}(&{self.n(s.name)}, {self.buf(s.src)}, {self.buf(s.dst)})",
        )

    def add_softmax(self, s: SoftmaxStep) -> None:
        e = self.array(
            "int32_t",
            f"{s.name}_exp",
            s.exp_table,
            f"{s.name} exp(beta * scale * (x - max)) in Q0.31, indexed by max - x [256]",
            6,
        )
        fields = [Field(str(s.rows), "rows"), Field(str(s.depth), "depth"), Field(e, "exp_table")]
        self.layer(
            s,
            "softmax_t",
            fields,
            f"{self.n('softmax_s8')}(&{self.n(s.name)}, {self.buf(s.src)}, {self.buf(s.dst)})",
        )

    def layer(self, s: Step, ctype_suffix: str, fields: list[Field], call: str) -> None:
        where = f"{self.where(s.src)} -> {self.where(s.dst)}"
        comment = f"{s.name}: {self.describe_ops(s)} ({where})"
        self.layers.append(
            {
                "ctype": self.n(ctype_suffix) if fields else "",
                "name": self.n(s.name) if fields else "",
                "fields": fields,
                "comment": comment,
            }
        )
        out = self.buf(s.dst)
        self.calls.append(
            {
                "comment": comment,
                "code": call,
                "out": f"(const int8_t *)({out})",
                "size": str(s.dst.size),
            }
        )

    def where(self, b: Buffer) -> str:
        if b.location != "arena":
            return b.location
        return f"arena[{b.offset}, {b.offset + b.size})"

    # --- files -------------------------------------------------------------------------

    def render(self, op_names: dict[int, str]) -> dict[str, str]:
        """All files of ``standalone/``, keyed by file name."""
        self.op_names = op_names
        plan = self.plan
        for s in plan.steps:
            if isinstance(s, ConvStep):
                self.add_conv(s)
            elif isinstance(s, FullyConnectedStep):
                self.add_fc(s)
            elif isinstance(s, PoolStep):
                self.add_pool(s)
            elif isinstance(s, LutStep):
                self.add_lut(s)
            elif isinstance(s, SoftmaxStep):
                self.add_softmax(s)
            else:  # pragma: no cover - the planner makes only these
                raise TypeError(type(s).__name__)
        p, P = self.p, self.P
        common = {"banner": self.banner, "p": p, "P": P}
        # Names that the fixed templates use: registered here so they are checked too.
        for suffix in (
            "infer",
            "predict",
            "status_t",
            "conv_t",
            "fully_connected_t",
            "pool_t",
            "pool_layer_t",
            "lut_t",
            "softmax_t",
            "pool_kind_t",
            "conv_s8",
            "conv_s8_scratch_size",
            "fully_connected_s8",
            "pool_s8",
            "lut_s8",
            "softmax_s8",
            "srdhm",
            "rdbpot",
            "requantize",
            "clamp",
            "dot_s8",
            "arith_shift_check",
            "arith_shift_check64",
            "mulhi",
            "requantize_fast",
            "sat8",
            "pack16",
            "sxtb16_ror8",
            "reach_t",
            "fc_finish",
            "fc_rows_dsp",
            "fc_rows_avx2",
            "fc_fold_avx2",
            "fc_expand_avx2",
            "host_simd_unused",
            "requantize_fast16",
            "sat8x16",
            "lookup16",
            "store16",
            "mask16",
            "requantize_fast8",
            "sat8x8",
            "lookup8",
            "store8",
            "trace",
        ):
            self.n(suffix)
        for suffix in (
            "OK",
            "ERROR_NULL_POINTER",
            "ERROR_MISALIGNED_SCRATCH",
            "ERROR_BAD_PARAMS",
            "POOL_NONE",
            "POOL_AVG",
            "POOL_MAX",
            "INPUT_SIZE",
            "OUTPUT_SIZE",
            "SCRATCH_SIZE",
            "SCRATCH_ALIGN",
            "INPUT_SCALE",
            "INPUT_ZERO_POINT",
            "OUTPUT_SCALE",
            "OUTPUT_ZERO_POINT",
            "ALIGN",
            "H",
            "ARITH_H",
            "LAYERS_H",
            "HOST_SIMD_H",
            "KERNELS_H",
            "WEIGHTS_H",
            "TRACE",
            "TRACE_STEP",
            "CONV_BLOCK",
            "FC_ROWS",
            "DSP",
            "NO_DSP",
            "LDRD",
            "LDRD_NEXT",
            "NOINLINE",
            "AVX2",
            "AVX512",
            "NO_SIMD",
            "X86_WEIGHTS",
            "KEEP",
            "FC_PASS",
            "FC_W16",
        ):
            self.n.macro(suffix)

        shape = plan.input.shape
        in_h, in_w, in_c = (shape[1], shape[2], shape[3]) if len(shape) == 4 else (1, 1, 1)
        scratch = plan.scratch_size
        files: dict[str, str] = {}
        files[f"{p}.h"] = render(
            "public.h.j2",
            **common,
            model_layers=[f"{st.name}: {self.describe_ops(st)}" for st in plan.steps],
            input_shape=_shape(plan.input.shape),
            output_shape=_shape(plan.output.shape),
            input_h=in_h,
            input_w=in_w,
            input_c=in_c,
            input_size=plan.input.size,
            output_size=plan.output.size,
            scratch_size=scratch,
            scratch_align=ARENA_ALIGN,
            n_steps=len(plan.steps),
            input_scale=c_float(plan.input.scale),
            input_zp=plan.input.zero_point,
            output_scale=c_float(plan.output.scale),
            output_zp=plan.output.zero_point,
            quantize_mnist=self.mnist is not None,
            pad_note=(
                f"zero-pad it to {in_h}x{in_w}"
                if self.mnist and self.mnist.pad
                else "keep it 28x28"
            ),
        )
        files[f"{p}_arith.h"] = render("arith.h.j2", **common)
        files[f"{p}_kernels.h"] = render(
            "kernels.h.j2",
            **common,
            # Only the kernels this model uses are declared (and defined).
            kinds=sorted({s.kind for s in plan.steps}),
            generic=self.generic_conv,
            conv_block=CONV_BLOCK,
            fc_rows=FC_ROWS,
        )
        kinds = {s.kind for s in plan.steps}
        for kind in sorted(kinds):
            if kind == "conv" and not self.generic_conv:
                continue  # every convolution is a tile layer (the layers file)
            files[f"{p}_{KERNEL_FILES[kind][: -len('.c.j2')]}.c"] = render(
                KERNEL_FILES[kind], **common
            )
        if self.tiles:
            files[f"{p}_layers.h"] = render(
                "layers.h.j2", **common, tile_functions=self.tile_functions
            )
            files[f"{p}_layers.c"] = render("layers.c.j2", **common, tiles=self.tiles)
        fc = "fully_connected" in kinds
        if self.tiles or fc:
            # The x86 (AVX2 / AVX-512) code, which a firmware build does not need.
            files[f"{p}_host_simd.h"] = render(
                "host_simd.h.j2", **common, tile_functions=self.tile_functions, fc=fc
            )
            files[f"{p}_host_simd.c"] = render("host_simd.c.j2", **common, tiles=self.tiles, fc=fc)
        arrays = [a.as_context() for a in self.arrays]
        files[f"{p}_weights.h"] = render("weights.h.j2", **common, arrays=arrays)
        files[f"{p}_weights.c"] = render("weights.c.j2", **common, arrays=arrays, align=ARRAY_ALIGN)
        files[f"{p}_model.c"] = render(
            "model.c.j2",
            **common,
            layers=self.layers,
            calls=self.calls,
            tiles=bool(self.tiles),
            scratch_size=scratch,
            memory_lines=self.memory_lines(),
        )
        if self.mnist is not None:
            self.n("quantize_mnist")
            self.n("pixel_table")
            self.n.macro("MNIST_PIXELS")
            files[f"{p}_quantize.c"] = render(
                "quantize.c.j2",
                **common,
                table=c_values(self.mnist.table),
                pad_value=c_int(self.mnist.pad_value),
                pad=self.mnist.pad,
            )
        return files

    def memory_lines(self) -> list[str]:
        items: list[tuple[int, int, str]] = []
        for b in self.plan.buffers:
            if b.location == "arena":
                steps = [s.name for s in self.plan.steps if s.src is b or s.dst is b]
                items.append((b.offset, b.size, f"activation {b.label} ({', '.join(steps)})"))
        for s in self.plan.steps:
            if s.scratch:
                items.append((s.scratch_offset, s.scratch, f"{s.name} kernel scratch"))
        return [f"[{o:5d}, {o + n:5d}) {what}" for o, n, what in sorted(items)]
