"""Render a :class:`~firmware_export.plan.Plan` as the standalone C library.

The writer only spells out what the plan decided: arrays, parameter blocks in the order of
the C structs, and the call sequence. Kernel sources are fixed templates (one kernel per
file) instantiated for the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_export.csyntax import Names, c_float, c_int, c_values, render
from firmware_export.plan import (
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
        }


@dataclass
class Field:
    value: str
    comment: str


@dataclass
class MnistInput:
    """How raw 28x28 pixels map to the model input (from the Python preprocessing)."""

    table: list[int]  # quantized value of pixel 0..255
    pad_value: int
    pad: int


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


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

    # --- helpers -----------------------------------------------------------------------

    def array(
        self, ctype: str, suffix: str, values: list[int], comment: str, per_line: int = 16
    ) -> str:
        name = self.n(suffix)
        self.arrays.append(Array(ctype, name, [int(v) for v in values], comment, per_line))
        return name

    def table(self, step: Step, table: Table | None) -> str:
        if table is None:
            return "NULL"
        return self.array(
            "int8_t",
            f"{step.name}_table",
            table.c_order(),
            f"{step.name} activation table ({' then '.join(table.ops)}), indexed by (uint8_t)x",
        )

    def buf(self, b: Buffer, writable: bool) -> str:
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

    def add_conv(self, s: ConvStep) -> None:
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
            f"{self.n('conv_s8')}(&{self.n(s.name)}, {self.buf(s.src, False)}, "
            f"{self.buf(s.dst, True)}, arena + {s.scratch_offset})",
        )

    def add_fc(self, s: FullyConnectedStep) -> None:
        w = self.array(
            "int8_t",
            f"{s.name}_weights",
            s.weights.reshape(-1).tolist(),
            f"{s.name} weights [{s.out_size}][{s.in_size}]",
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
        sh = self.array(
            "int32_t",
            f"{s.name}_shift",
            s.shift,
            f"{s.name} requantization shifts [{s.out_size}]",
            16,
        )
        lut = self.table(s, s.table)
        fields = [
            Field(str(s.in_size), "in_size"),
            Field(str(s.out_size), "out_size"),
            Field(c_int(s.output_zero_point), "output_zero_point"),
            Field(f"{s.act_min}, {s.act_max}", "act_min, act_max"),
            Field(w, "weights"),
            Field(b, "bias"),
            Field(m, "multiplier"),
            Field(sh, "shift"),
            Field(lut, "lut"),
        ]
        self.layer(
            s,
            "fully_connected_t",
            fields,
            f"{self.n('fully_connected_s8')}(&{self.n(s.name)}, {self.buf(s.src, False)}, "
            f"{self.buf(s.dst, True)})",
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
            f"{self.n('pool_s8')}(&{self.n(s.name)}, {self.buf(s.src, False)}, "
            f"{self.buf(s.dst, True)})",
        )

    def add_lut(self, s: LutStep) -> None:
        t = self.table(s, s.table)
        fields = [Field(str(s.size), "size"), Field(t, "table")]
        self.layer(
            s,
            "lut_t",
            fields,
            f"{self.n('lut_s8')}(&{self.n(s.name)}, {self.buf(s.src, False)}, "
            f"{self.buf(s.dst, True)})",
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
            f"{self.n('softmax_s8')}(&{self.n(s.name)}, {self.buf(s.src, False)}, "
            f"{self.buf(s.dst, True)})",
        )

    def layer(self, s: Step, ctype_suffix: str, fields: list[Field], call: str) -> None:
        where = f"{self.where(s.src)} -> {self.where(s.dst)}"
        comment = f"{s.name}: {self.describe_ops(s)} ({where})"
        self.layers.append(
            {
                "ctype": self.n(ctype_suffix),
                "name": self.n(s.name),
                "fields": fields,
                "comment": comment,
            }
        )
        out = self.buf(s.dst, True)
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
            "KERNELS_H",
            "WEIGHTS_H",
            "TRACE",
            "TRACE_STEP",
            "CONV_BLOCK",
        ):
            self.n.macro(suffix)

        shape = plan.input.shape
        in_h, in_w, in_c = (shape[1], shape[2], shape[3]) if len(shape) == 4 else (1, 1, 1)
        scratch = max(plan.arena_size, 4)
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
            scratch_align=4,
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
        files[f"{p}_kernels.h"] = render("kernels.h.j2", **common)
        for kind in sorted({s.kind for s in plan.steps}):
            files[f"{p}_{KERNEL_FILES[kind][: -len('.c.j2')]}.c"] = render(
                KERNEL_FILES[kind], **common
            )
        arrays = [a.as_context() for a in self.arrays]
        files[f"{p}_weights.h"] = render("weights.h.j2", **common, arrays=arrays)
        files[f"{p}_weights.c"] = render("weights.c.j2", **common, arrays=arrays, align=ARRAY_ALIGN)
        files[f"{p}_model.c"] = render(
            "model.c.j2",
            **common,
            layers=self.layers,
            calls=self.calls,
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
