"""The planner: walks the graph, folds the static shape chain, aliases RESHAPE, hands each op
to its lowering (``lower_conv``, ``lower_fc``, ``lower_other``) and records buffer lifetimes;
``build_plan`` then lays the buffers out with ``arena``."""

from __future__ import annotations

import dataclasses

import numpy as np

from firmware_export.cflags import OPTIMIZE_MODES
from firmware_export.checks import find_boundary
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import Graph, Op, PackOptions, StridedSliceOptions, Tensor
from firmware_export.plan.arena import assign_memory
from firmware_export.plan.lower_common import elementwise_table
from firmware_export.plan.lower_conv import lower_conv
from firmware_export.plan.lower_fc import lower_fc
from firmware_export.plan.lower_other import lower_elementwise, lower_pool, lower_softmax
from firmware_export.plan.types import (
    ELEMENTWISE_OPS,
    Buffer,
    Plan,
    Step,
    Table,
    TensorInfo,
)


class Planner:
    def __init__(self, g: Graph, optimize: str = "speed") -> None:
        self.g = g
        self.optimize = optimize
        self.problems: list[str] = []
        self.const: dict[int, np.ndarray] = {
            t.index: t.data for t in g.tensors if t.data is not None
        }
        self.folded: list[int] = []
        self.alias: dict[int, int] = {}  # tensor -> tensor it shares memory with
        self.steps: list[Step] = []
        self.buffers: dict[int, Buffer] = {}  # root tensor -> buffer
        self._next_buffer = 0
        self._counts: dict[str, int] = {}
        self.dead: list[int] = []

    # --- constant folding of the shape chain ---------------------------------------

    def fold_shape_ops(self) -> None:
        for op in self.g.ops:
            try:
                if op.kind == "SHAPE":
                    src = self.g.tensors[op.inputs[0]]
                    out = self.g.tensors[op.outputs[0]]
                    dt = np.int64 if out.dtype == "INT64" else np.int32
                    self.const[op.outputs[0]] = np.array(src.shape, dtype=dt)
                    self.folded.append(op.index)
                elif op.kind == "STRIDED_SLICE":
                    self.const[op.outputs[0]] = self._strided_slice(op)
                    self.folded.append(op.index)
                elif op.kind == "PACK":
                    vals = [self._const_input(op, i) for i in range(len(op.inputs))]
                    assert isinstance(op.options, PackOptions)
                    self.const[op.outputs[0]] = np.stack(vals, axis=op.options.axis)
                    self.folded.append(op.index)
            except FirmwareExportError as exc:
                self.problems.append(str(exc))

    def _const_input(self, op: Op, i: int) -> np.ndarray:
        t = op.inputs[i]
        if t < 0 or t not in self.const:
            raise FirmwareExportError(
                f"{op.describe()}: input {i} is computed at run time; only static shape "
                "computations can be folded"
            )
        return self.const[t]

    def _strided_slice(self, op: Op) -> np.ndarray:
        opt = op.options
        assert isinstance(opt, StridedSliceOptions)
        if opt.ellipsis_mask or opt.new_axis_mask or opt.offset:
            raise FirmwareExportError(
                f"{op.describe()}: ellipsis/new-axis/offset slicing is not supported"
            )
        x = self._const_input(op, 0)
        begin, end, strides = (self._const_input(op, i).tolist() for i in (1, 2, 3))
        if x.ndim != len(begin):
            raise FirmwareExportError(f"{op.describe()}: slice rank mismatch")
        index: list[int | slice] = []
        for axis in range(x.ndim):
            b = None if opt.begin_mask >> axis & 1 else int(begin[axis])
            e = None if opt.end_mask >> axis & 1 else int(end[axis])
            if opt.shrink_axis_mask >> axis & 1:
                index.append(int(begin[axis]))
            else:
                index.append(slice(b, e, int(strides[axis])))
        return np.asarray(x[tuple(index)])

    # --- buffers ---------------------------------------------------------------------

    def root(self, t: int) -> int:
        while t in self.alias:
            t = self.alias[t]
        return t

    def buffer(self, t: int) -> Buffer:
        r = self.root(t)
        if r not in self.buffers:
            tensor = self.g.tensors[r]
            loc = "arena"
            self.buffers[r] = Buffer(self._next_buffer, tensor.size, loc, [r])
            self._next_buffer += 1
        return self.buffers[r]

    # --- lowering --------------------------------------------------------------------

    def prune(self) -> None:
        """Mark ops whose results never reach the model output as dead (not lowered)."""
        live = set(self.g.outputs)
        alive: set[int] = set()
        for op in reversed(self.g.ops):
            if any(t in live for t in op.outputs):
                alive.add(op.index)
                live.update(t for t in op.inputs if t >= 0)
        self.dead = [op.index for op in self.g.ops if op.index not in alive]

    def consumers(self, t: int) -> list[Op]:
        skip = set(self.folded) | set(self.dead)
        return [op for op in self.g.ops if t in op.inputs and op.index not in skip]

    def single_consumer(self, t: int) -> Op | None:
        if t in self.g.outputs:
            return None
        users = self.consumers(t)
        return users[0] if len(users) == 1 else None

    def lower(self) -> None:
        # RESHAPE first: aliases must be known before buffers are created.
        for op in self.g.ops:
            if op.kind == "RESHAPE" and op.index not in self.dead:
                self._reshape(op)
        done: set[int] = set(self.folded) | set(self.dead)
        for op in self.g.ops:
            if op.index in done or op.kind == "RESHAPE":
                continue
            try:
                used = self._lower_op(op)
            except FirmwareExportError as exc:
                self.problems.append(str(exc))
                used = [op.index]
            done.update(used)

    def _reshape(self, op: Op) -> None:
        src = self.g.tensors[op.inputs[0]]
        dst = self.g.tensors[op.outputs[0]]
        if len(op.inputs) > 1 and op.inputs[1] >= 0 and op.inputs[1] not in self.const:
            self.problems.append(
                f"{op.describe()}: the target shape is computed at run time from non-static values"
            )
            return
        if src.size != dst.size:
            self.problems.append(f"{op.describe()}: reshapes {src.size} elements into {dst.size}")
            return
        if len(op.inputs) > 1 and op.inputs[1] >= 0:
            target = [int(v) for v in np.asarray(self.const[op.inputs[1]]).ravel()]
            known = [d for d in target if d != -1]
            prod = int(np.prod(known)) if known else 1
            if target.count(-1) > 1 or (prod == 0 or src.size % prod != 0):
                self.problems.append(
                    f"{op.describe()}: cannot reshape {list(src.shape)} to {target}"
                )
                return
            resolved = [d if d != -1 else src.size // prod for d in target]
            if tuple(resolved) != dst.shape:
                self.problems.append(
                    f"{op.describe()}: folded shape {resolved} does not "
                    f"match the output shape {list(dst.shape)}"
                )
                return
        self.alias[op.outputs[0]] = op.inputs[0]

    def elementwise_chain(self, t: int) -> tuple[Table | None, int, list[int]]:
        """Compose the int8 elementwise ops that consume ``t`` one after another."""
        table: Table | None = None
        ops: list[int] = []
        while True:
            nxt = self.single_consumer(t)
            if nxt is None or nxt.kind not in ELEMENTWISE_OPS:
                break
            step_table = elementwise_table(self.g, nxt)
            table = step_table if table is None else table.then(step_table)
            ops.append(nxt.index)
            t = nxt.outputs[0]
        return table, t, ops

    def name(self, kind: str) -> str:
        """``conv0``, ``conv1``, ``fc0``, ...: numbered per kind in execution order."""
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        return f"{kind}{n}"

    def add(self, step: Step, reads: list[int], writes: int) -> None:
        index = len(self.steps)
        step.out_tensor = writes
        self.steps.append(step)
        for t in reads:
            b = self.buffer(t)
            b.last = max(b.last, index)
        d = self.buffer(writes)
        if d.first < 0 or d.first > index:
            d.first = index
        d.last = max(d.last, index)

    def _lower_op(self, op: Op) -> list[int]:
        if op.kind == "CONV_2D":
            return lower_conv(self, op)
        if op.kind == "FULLY_CONNECTED":
            return lower_fc(self, op)
        if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            return lower_pool(self, op)
        if op.kind == "SOFTMAX":
            return lower_softmax(self, op)
        if op.kind in ELEMENTWISE_OPS:
            return lower_elementwise(self, op)
        raise FirmwareExportError(f"{op.describe()} is not supported")

    def all_buffers(self) -> list[Buffer]:
        """Every buffer created so far, in creation order."""
        return sorted(self.buffers.values(), key=lambda b: b.id)


def _info(t: Tensor) -> TensorInfo:
    q = t.quant
    return TensorInfo(t.shape, q.scale if q else 0.0, q.zero_point if q else 0, t.dtype, t.index)


def strip_boundary(g: Graph) -> tuple[Graph, list[Op]]:
    """The int8 core of ``g``: without the QUANTIZE/DEQUANTIZE that ``--io float32`` or
    ``--io uint8`` leave at the model's edges (see ``checks.find_boundary``)."""
    b = find_boundary(g)
    if not b.ops:
        return g, []
    inputs = (b.input_op.outputs[0],) if b.input_op else g.inputs
    outputs = (b.output_op.inputs[0],) if b.output_op else g.outputs
    ops = tuple(op for op in g.ops if op not in b.ops)
    return dataclasses.replace(g, ops=ops, inputs=inputs, outputs=outputs), b.ops


def build_plan(model: Graph, optimize: str = "speed") -> Plan:
    """Lower ``model`` (already checked by ``checks.check_graph``) to a :class:`Plan`;
    ``optimize`` is an ``OPTIMIZE_MODES`` entry (``export-c --optimize``)."""
    if optimize not in OPTIMIZE_MODES:
        raise FirmwareExportError(
            f"--optimize {optimize!r}: choose one of {', '.join(OPTIMIZE_MODES)}"
        )
    g, stripped = strip_boundary(model)
    planner = Planner(g, optimize)
    planner.prune()
    planner.fold_shape_ops()
    if not planner.problems:
        planner.lower()
    if not planner.problems:
        skip = set(planner.folded) | set(planner.dead)
        unlowered = [
            op
            for op in g.ops
            if op.index not in skip
            and op.kind != "RESHAPE"
            and not any(op.index in s.ops for s in planner.steps)
        ]
        for op in unlowered:
            planner.problems.append(f"{op.describe()} could not be lowered")
        out_root = planner.root(g.outputs[0])
        producers = {planner.root(g.tensors[t].index) for s in planner.steps for t in s.dst.tensors}
        if out_root not in producers and out_root != planner.root(g.inputs[0]):
            planner.problems.append("the model output is not computed from its input")
    if planner.problems:
        raise FirmwareExportError("cannot export this model: " + "; ".join(planner.problems))
    in_buf = planner.buffer(g.inputs[0])
    out_buf = planner.buffer(g.outputs[0])
    buffers, arena = assign_memory(
        planner.steps, planner.all_buffers(), in_buf, out_buf, g.outputs[0]
    )
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    mx, my = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    return Plan(
        steps=planner.steps,
        buffers=buffers,
        arena_size=arena,
        input=_info(x),
        output=_info(y),
        folded_ops=planner.folded,
        dead_ops=planner.dead,
        model_input=_info(mx) if mx is not x else None,
        model_output=_info(my) if my is not y else None,
        stripped_ops=[op.index for op in stripped],
        optimize=optimize,
    )
