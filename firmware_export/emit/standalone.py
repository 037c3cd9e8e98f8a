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

from firmware_export.csyntax import Names, c_float, c_int, c_values, render
from firmware_export.emit import conv
from firmware_export.emit.arrays import (
    ARRAY_ALIGN,
    KERNEL_FILES,
    Array,
    Field,
    clamp_table,
    shape_text,
)
from firmware_export.mnist import MnistInput
from firmware_export.plan import (
    ARENA_ALIGN,
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
        conv.add_tile_conv(self, s)

    def add_conv(self, s: ConvStep) -> None:
        conv.add_conv(self, s)

    def add_fc(self, s: FullyConnectedStep) -> None:
        blocks = s.row_blocks()
        w = self.array(
            "uint8_t",
            f"{s.name}_weights",
            s.packed_weights().tolist(),
            f"{s.name} weights [{s.out_size}][{s.in_size}] + 128, in blocks of "
            f"{'+'.join(map(str, blocks))} rows, each [{s.in_padded // 4}][rows][4]",
        )
        b = self.array(
            "int32_t",
            f"{s.name}_bias",
            s.offset_bias(),
            f"{s.name} bias [{s.out_size}] - ({s.input_zero_point} + 128) * row sum (mod 2^32)",
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
            "int8_t",
            f"{s.name}_shift",
            s.fast.rshift if s.fast is not None else s.shift,
            f"{s.name} requantization "
            + ("right shifts" if s.fast is not None else "shifts (TFLM)")
            + f" [{s.out_size}]",
            16,
        )
        lut = self.table(s, clamp_table(s.table, s.act_min, s.act_max) if s.table else None)
        fields = [
            Field(str(s.in_size), "in_size"),
            Field(str(s.in_padded), "in_padded"),
            Field(str(s.out_size), "out_size"),
            Field(c_int(s.output_zero_point), "output_zero_point"),
            Field(f"{s.act_min}, {s.act_max}", "act_min, act_max"),
            Field("1" if s.fast is not None else "0", "fast"),
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
        fields = [Field(str(s.rows), "rows"), Field(str(s.depth), "depth")]
        if s.exp_table is None:  # --optimize size: the kernel computes exp
            fields += [
                Field(c_int(s.input_multiplier), "input_multiplier"),
                Field(str(s.input_left_shift), "input_left_shift"),
                Field(c_int(s.diff_min), "diff_min"),
            ]
        else:
            e = self.array(
                "int32_t",
                f"{s.name}_exp",
                s.exp_table,
                f"{s.name} exp(beta * scale * (x - max)) in Q0.31, indexed by max - x [256]",
                6,
            )
            fields.append(Field(e, "exp_table"))
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
        exp_computed = any(isinstance(s, SoftmaxStep) and s.exp_table is None for s in plan.steps)
        common = {
            "banner": self.banner,
            "p": p,
            "P": P,
            "exp_computed": exp_computed,
            "conv_block": plan.conv_block,
        }
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
            "fc_rows_wide",
            "fc_rows_narrow",
            "fc_dot1_dsp",
            "fc_dot1_wide",
            "fc_dot1_c",
            "fc_expand_dsp",
            "fc_expand_wide",
            "fc_expand_narrow",
            "fc_last_group",
            "uxtb16_ror8",
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
            "FC_W16",
            "FC_NARROW",
            "FC_CHUNK",
            "FC_MASK",
            "FC_ROR16",
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
            input_shape=shape_text(plan.input.shape),
            output_shape=shape_text(plan.output.shape),
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
