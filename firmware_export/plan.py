"""Lower a typed :class:`~firmware_export.graph.Graph` to an engine plan.

The plan is everything the C writer needs and nothing it has to compute:

* the SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE chain that converters leave behind a
  ``Flatten`` is constant-folded, and RESHAPE becomes an alias (same bytes);
* CONV_2D absorbs the int8 -> int8 elementwise ops after it (LOGISTIC, TANH, RELU, RELU6,
  int8 QUANTIZE, composed into one 256-entry table) and a non-overlapping pooling after that;
  FULLY_CONNECTED absorbs its elementwise ops the same way. Both are exact: requantize ->
  table -> pool is what TFLM does element by element;
* each convolution gets an algorithm: *tile* (``firmware_export.tile``: stride 1, outputs in
  whole 2x2 blocks, fast requantization exact) with its weights as doubled int16 pairs of taps
  per (output channel, used input channel), or *generic* with its weights re-arranged per
  output channel into runs over the input channels that have a non-zero weight. Both skip the
  all-zero input maps (the sparse C3 of LeNet-5 computes 150,000 MACs, not 240,000); every
  bias has ``-input_zero_point * sum(weights)`` folded in;
* fully connected weights are interleaved in blocks of FC_ROWS rows;
* multipliers, shifts, activation ranges and tables are computed exactly as TFLM's Prepare,
  plus the constants of the fast requantization (``FastRequant``) where it is exact;
* activation buffers and kernel scratch are placed in one scratch arena by lifetime (greedy,
  largest first), elementwise steps run in place; tile strips are then widened as long as the
  arena does not grow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from firmware_export import quantmath as qm
from firmware_export import tile
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import (
    Activation,
    Conv2DOptions,
    FullyConnectedOptions,
    Graph,
    Op,
    PackOptions,
    Padding,
    Pool2DOptions,
    SoftmaxOptions,
    StridedSliceOptions,
    Tensor,
)
from firmware_export.reader import find_boundary

#: Ops that become (part of) an int8 -> int8 table.
ELEMENTWISE_OPS = frozenset({"LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE"})
#: Alignment of every buffer in the scratch arena (int32 accumulators live there too).
ARENA_ALIGN = 4
ACC_LIMIT = (1 << 31) - 1
#: Convolution outputs per pass over the weights (<PREFIX>_CONV_BLOCK in C).
CONV_BLOCK = 4
#: Fully connected rows computed per pass over the input (the weights are interleaved so).
FC_ROWS = 4
#: Bytes of an emitted int8 -> int8 table: 256 entries and 4 bytes of padding (x86 gathers
#: read 32 bits at an entry).
TABLE_BYTES = 260
#: Fast requantization needs the doubled accumulator to fit an int32.
FAST_ACC_LIMIT = (1 << 30) - 1


# ----------------------------------------------------------------------------- plan types


@dataclass
class Buffer:
    """An activation buffer: the model input, the model output, or a region of the arena."""

    id: int
    size: int
    location: str  # "input" | "output" | "arena"
    tensors: list[int] = field(default_factory=list)
    first: int = -1  # step that writes it (-1: before the first step)
    last: int = -1  # last step that reads it
    offset: int = 0  # in the arena

    @property
    def label(self) -> str:
        return f"t{self.tensors[0]}" if self.tensors else f"b{self.id}"


@dataclass
class PoolSpec:
    kind: str  # "avg" | "max"
    filter_h: int
    filter_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int
    act_min: int
    act_max: int


@dataclass
class Table:
    """A 256-entry int8 -> int8 table (index = value + 128) and what it stands for."""

    values: list[int]
    ops: list[str]

    def then(self, other: Table) -> Table:
        return Table([other.values[v + 128] for v in self.values], self.ops + other.ops)

    def c_order(self) -> list[int]:
        """Entries in C index order: ``table[(uint8_t)x]``."""
        return [self.values[(i ^ 0x80)] for i in range(256)]


@dataclass
class FastRequant:
    """TFLM's requantization (double rounding) plus the output zero point, in the form the
    fast kernels use: ``x = srdhm(acc, multiplier)`` computed as the rounded high word of
    ``(2 * acc) * multiplier`` (one ``SMMULR``), then ``(x + (x >> 31) + round) >> rshift``
    with ``round = 2^(rshift - 1) + zero_point * 2^rshift``. Exact (see ``quantmath``) when
    every shift is a right shift and the accumulator bound leaves room; otherwise the plan
    keeps ``None`` and the kernels use the generic arithmetic."""

    rshift: list[int]
    round: list[int]


@dataclass
class TilePlan:
    """The tile convolution of ``firmware_export.tile`` for one layer."""

    shape: tile.TileShape
    windows: int  # 2x2 blocks per strip (the tile is one strip wide)
    blocks_h: int  # block rows (pooled output rows, or conv rows / 2 without pooling)
    blocks_w: int  # blocks per row
    map_start: list[int]  # [out_c + 1] first entry of each output channel in ``maps``
    maps: list[int]  # patch-channel index of each (output channel, used input channel)
    weights: np.ndarray  # int32 pair words, [len(maps)][n_pairs]
    bias: list[int]  # doubled folded bias
    dense: bool  # every output channel uses every patch channel, in order

    @property
    def width(self) -> int:
        return self.shape.width(self.windows)

    def scratch(self, n_maps: int) -> int:
        return 4 * self.shape.rows * self.width * n_maps


@dataclass
class Step:
    """One kernel call. ``src`` / ``dst`` are buffers; ``scratch`` is kernel scratch bytes."""

    name: str
    kind: str
    ops: list[int]
    src: Buffer
    dst: Buffer
    scratch: int = 0
    scratch_offset: int = 0
    macs: int = 0
    tflm_macs: int = 0
    out_tensor: int = -1  # the graph tensor this step produces

    @property
    def in_place(self) -> bool:
        return self.src is self.dst


@dataclass
class ConvStep(Step):
    in_h: int = 0
    in_w: int = 0
    in_c: int = 0
    conv_h: int = 0
    conv_w: int = 0
    out_c: int = 0
    kernel_h: int = 0
    kernel_w: int = 0
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = -128
    act_max: int = 127
    patch_channels: list[int] = field(default_factory=list)
    run_start: list[int] = field(default_factory=list)
    run_offset: list[int] = field(default_factory=list)
    run_length: list[int] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    bias: list[int] = field(default_factory=list)
    multiplier: list[int] = field(default_factory=list)
    shift: list[int] = field(default_factory=list)
    table: Table | None = None
    pool: PoolSpec | None = None
    weight_shape: tuple[int, ...] = ()
    skipped_channels: int = 0  # (output channel, input channel) pairs with all-zero weights
    algo: str = "generic"  # "generic" (gather + int8 runs) or "tile" (see TilePlan)
    tile: TilePlan | None = None
    fast: FastRequant | None = None

    @property
    def out_h(self) -> int:
        return self.pool.out_h if self.pool else self.conv_h

    @property
    def out_w(self) -> int:
        return self.pool.out_w if self.pool else self.conv_w


@dataclass
class FullyConnectedStep(Step):
    in_size: int = 0
    out_size: int = 0
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = -128
    act_max: int = 127
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))
    bias: list[int] = field(default_factory=list)
    multiplier: list[int] = field(default_factory=list)
    shift: list[int] = field(default_factory=list)
    table: Table | None = None
    per_channel: bool = True
    fast: FastRequant | None = None

    @property
    def in_padded(self) -> int:
        return -(-self.in_size // 4) * 4

    @property
    def rows_padded(self) -> int:
        return -(-self.out_size // FC_ROWS) * FC_ROWS

    def packed_weights(self) -> np.ndarray:
        """Blocks of FC_ROWS rows, each as [in_padded / 4][FC_ROWS][4] int8 (zero padded): one
        pass over a block reads its weights in order, four rows of four inputs at a time."""
        w = np.zeros((self.rows_padded, self.in_padded), np.int8)
        w[: self.out_size, : self.in_size] = self.weights
        blocks = w.reshape(self.rows_padded // FC_ROWS, FC_ROWS, self.in_padded // 4, 4)
        return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3)).reshape(-1)


@dataclass
class PoolStep(Step):
    in_h: int = 0
    in_w: int = 0
    channels: int = 0
    pool: PoolSpec | None = None


@dataclass
class LutStep(Step):
    size: int = 0
    table: Table | None = None


@dataclass
class SoftmaxStep(Step):
    rows: int = 0
    depth: int = 0
    exp_table: list[int] = field(default_factory=list)


@dataclass
class TensorInfo:
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    dtype: str = "INT8"
    index: int = -1  # tensor index in the .tflite model

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Plan:
    steps: list[Step]
    buffers: list[Buffer]
    arena_size: int
    input: TensorInfo
    output: TensorInfo
    folded_ops: list[int]
    dead_ops: list[int] = field(default_factory=list)
    #: The model's own interface when it differs from the engine's int8 one (--io float32 /
    #: uint8): the conversions at the edges are left to the application.
    model_input: TensorInfo | None = None
    model_output: TensorInfo | None = None
    stripped_ops: list[int] = field(default_factory=list)

    @property
    def scratch_size(self) -> int:
        """``<PREFIX>_SCRATCH_SIZE``: the arena, at least one aligned word (so that the
        caller's scratch array is never empty)."""
        return max(self.arena_size, ARENA_ALIGN)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    @property
    def tflm_macs(self) -> int:
        return sum(s.tflm_macs for s in self.steps)


# ----------------------------------------------------------------------------- helpers


def _pool_geometry(
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


def _nhwc(t: Tensor) -> tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise FirmwareExportError(
            f"{t.describe()} has shape {list(t.shape)}; expected NHWC with batch 1"
        )
    return t.shape[1], t.shape[2], t.shape[3]


def _act_name(a: Activation) -> str:
    if a in (Activation.TANH, Activation.SIGN_BIT):
        raise FirmwareExportError(
            f"fused activation {a.value} is not supported for int8 (TFLM ignores it)"
        )
    return a.value


def _scale(t: Tensor) -> float:
    assert t.quant is not None
    return t.quant.scale


def _zp(t: Tensor) -> int:
    assert t.quant is not None
    return t.quant.zero_point


def _acc_bound(folded: list[int], w2d: np.ndarray) -> int:
    """The largest |accumulator| any int8 input can give (bias folded in)."""
    if not folded:
        return 0
    w64 = np.abs(w2d.astype(np.int64)).sum(axis=1) * 128
    return int((np.abs(np.array(folded, dtype=np.int64)) + w64).max())


def _fast_requant(shift: list[int], zero_point: int, bound: int) -> FastRequant | None:
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


def _tile_plan(
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


# ----------------------------------------------------------------------------- the planner


class _Planner:
    def __init__(self, g: Graph) -> None:
        self.g = g
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

    def _elementwise_chain(self, t: int) -> tuple[Table | None, int, list[int]]:
        """Compose the int8 elementwise ops that consume ``t`` one after another."""
        table: Table | None = None
        ops: list[int] = []
        while True:
            nxt = self.single_consumer(t)
            if nxt is None or nxt.kind not in ELEMENTWISE_OPS:
                break
            step_table = self._table(nxt)
            table = step_table if table is None else table.then(step_table)
            ops.append(nxt.index)
            t = nxt.outputs[0]
        return table, t, ops

    def _table(self, op: Op) -> Table:
        src = self.g.tensors[op.inputs[0]]
        dst = self.g.tensors[op.outputs[0]]
        if src.dtype != "INT8" or dst.dtype != "INT8":
            raise FirmwareExportError(
                f"{op.describe()}: {src.dtype} -> {dst.dtype}; only int8 -> int8 is supported"
            )
        values: list[int]
        if op.kind == "LOGISTIC":
            if _zp(dst) != -128:
                raise FirmwareExportError(
                    f"{op.describe()}: output zero point {_zp(dst)}; TFLM requires -128"
                )
            p = qm.sigmoid_params(_scale(src), _zp(src))
            values = [qm.logistic_int8(x, p) for x in range(-128, 128)]
        elif op.kind == "TANH":
            p = qm.sigmoid_params(_scale(src), _zp(src))
            values = [qm.tanh_int8(x, p) for x in range(-128, 128)]
        elif op.kind == "RELU":
            values = qm.relu_int8_table(_scale(src), _zp(src), _scale(dst), _zp(dst))
        elif op.kind == "RELU6":
            values = qm.relu6_int8_table(_scale(src), _zp(src))
        elif op.kind == "QUANTIZE":
            values = qm.requantize_int8_table(_scale(src), _zp(src), _scale(dst), _zp(dst))
        else:  # pragma: no cover - guarded by ELEMENTWISE_OPS
            raise FirmwareExportError(f"{op.describe()} is not elementwise")
        return Table(values, [op.kind])

    def _name(self, kind: str) -> str:
        """``conv0``, ``conv1``, ``fc0``, ...: numbered per kind in execution order."""
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        return f"{kind}{n}"

    def _add(self, step: Step, reads: list[int], writes: int) -> None:
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
            return self._conv(op)
        if op.kind == "FULLY_CONNECTED":
            return self._fully_connected(op)
        if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            return self._pool(op)
        if op.kind == "SOFTMAX":
            return self._softmax(op)
        if op.kind in ELEMENTWISE_OPS:
            table = self._table(op)
            more, last_t, ops = self._elementwise_chain(op.outputs[0])
            if more is not None:
                table = table.then(more)
            src = self.g.tensors[op.inputs[0]]
            name = self._name("lut")
            step = LutStep(
                name,
                "lut",
                [op.index, *ops],
                self.buffer(op.inputs[0]),
                self.buffer(last_t),
                size=src.size,
                table=table,
            )
            self._add(step, [op.inputs[0]], last_t)
            return [op.index, *ops]
        raise FirmwareExportError(f"{op.describe()} is not supported")

    # --- CONV_2D ----------------------------------------------------------------------

    def _conv(self, op: Op) -> list[int]:
        opt = op.options
        assert isinstance(opt, Conv2DOptions)
        g = self.g
        x, w_t, y = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
        in_h, in_w, in_c = _nhwc(x)
        conv_h, conv_w, out_c = _nhwc(y)
        w = np.asarray(w_t.data)
        if w.ndim != 4 or w.shape[0] != out_c or w.shape[3] != in_c:
            raise FirmwareExportError(
                f"{op.describe()}: filter shape {list(w.shape)} does not "
                f"fit input {list(x.shape)} and output {list(y.shape)}"
            )
        kh, kw = int(w.shape[1]), int(w.shape[2])
        oh, ow, pad_t, pad_l = _pool_geometry(
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
        bias = self._bias(op, out_c)
        zp_in, zp_out = _zp(x), _zp(y)
        mult, shift = self._multipliers(x, w_t, y, out_c, per_tensor_fc=False)
        act_min, act_max = qm.activation_range(_act_name(opt.activation), _scale(y), zp_out)

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
        folded = self._fold_bias(op, bias, w.reshape(out_c, -1), zp_in)
        patch_bytes = -(-len(patch_channels) * taps // 4) * 4
        if len(patch_channels) * taps > 0xFFFF or len(run_offset) > 0xFFFF:
            raise FirmwareExportError(
                f"{op.describe()}: receptive field too large for the "
                "engine (more than 65535 values)"
            )

        t_last = op.outputs[0]
        ops = [op.index]
        table, t_last, chain = self._elementwise_chain(t_last)
        ops += chain
        pool: PoolSpec | None = None
        positions = conv_h * conv_w
        nxt = self.single_consumer(t_last)
        if nxt is not None and nxt.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            popt = nxt.options
            assert isinstance(popt, Pool2DOptions)
            if popt.stride_h >= popt.filter_h and popt.stride_w >= popt.filter_w:
                pool = self._pool_spec(nxt, conv_h, conv_w)
                positions = self._pool_coverage(pool, conv_h, conv_w)
                ops.append(nxt.index)
                t_last = nxt.outputs[0]
        name = self._name("conv")
        step = ConvStep(
            name,
            "conv",
            ops,
            self.buffer(op.inputs[0]),
            self.buffer(t_last),
            scratch=CONV_BLOCK * patch_bytes + 4 * out_c,
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
        bound = _acc_bound(folded, w.reshape(out_c, -1))
        step.fast = _fast_requant(shift, zp_out, bound)
        tp = _tile_plan(step, w, used, folded)
        if tp is not None:
            step.algo, step.tile = "tile", tp
            step.scratch = tp.scratch(len(patch_channels))
        self._add(step, [op.inputs[0]], t_last)
        return ops

    def _pool_coverage(self, p: PoolSpec, h: int, w: int) -> int:
        n = 0
        for py in range(p.out_h):
            y0 = py * p.stride_h - p.pad_top
            ys, ye = max(y0, 0), min(y0 + p.filter_h, h)
            for px in range(p.out_w):
                x0 = px * p.stride_w - p.pad_left
                xs, xe = max(x0, 0), min(x0 + p.filter_w, w)
                n += max(ye - ys, 0) * max(xe - xs, 0)
        return n

    def _bias(self, op: Op, n: int) -> np.ndarray:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return np.zeros(n, dtype=np.int64)
        b = self.g.tensors[op.inputs[2]]
        data = np.asarray(b.data).reshape(-1).astype(np.int64)
        if data.size != n:
            raise FirmwareExportError(
                f"{op.describe()}: bias has {data.size} values for {n} output channels"
            )
        return data

    def _fold_bias(self, op: Op, bias: np.ndarray, w2d: np.ndarray, zp_in: int) -> list[int]:
        w64 = w2d.astype(np.int64)
        folded = bias - zp_in * w64.sum(axis=1)
        bound = np.abs(folded) + np.abs(w64).sum(axis=1) * 128
        if folded.size and int(bound.max()) > ACC_LIMIT:
            raise FirmwareExportError(
                f"{op.describe()}: the int32 accumulator could overflow (bound {int(bound.max())})"
            )
        return [int(v) for v in folded]

    def _multipliers(
        self, x: Tensor, w: Tensor, y: Tensor, n: int, per_tensor_fc: bool
    ) -> tuple[list[int], list[int]]:
        assert w.quant is not None
        scales = list(w.quant.scales)
        if len(scales) not in (1, n):
            raise FirmwareExportError(f"{w.describe()}: {len(scales)} scales for {n} channels")
        mult, shift = [], []
        for i in range(n):
            fs = scales[i] if len(scales) > 1 else scales[0]
            if per_tensor_fc and len(scales) == 1:
                real = qm.fc_per_tensor_multiplier(_scale(x), fs, _scale(y))
            else:
                real = qm.conv_multiplier(_scale(x), fs, _scale(y))
            m, s = qm.quantize_multiplier(real)
            if not -31 <= s <= 30:
                raise FirmwareExportError(f"{w.describe()}: requantization shift {s} out of range")
            mult.append(m)
            shift.append(s)
        return mult, shift

    # --- POOL -------------------------------------------------------------------------

    def _pool_spec(self, op: Op, in_h: int, in_w: int) -> PoolSpec:
        opt = op.options
        assert isinstance(opt, Pool2DOptions)
        y = self.g.tensors[op.outputs[0]]
        oh, ow, pad_t, pad_l = _pool_geometry(
            opt.padding, in_h, in_w, opt.filter_h, opt.filter_w, opt.stride_h, opt.stride_w
        )
        yh, yw, _ = _nhwc(y)
        if (oh, ow) != (yh, yw):
            raise FirmwareExportError(
                f"{op.describe()}: output {yh}x{yw} does not match "
                f"{opt.padding.value} padding ({oh}x{ow})"
            )
        act_min, act_max = qm.activation_range(_act_name(opt.activation), _scale(y), _zp(y))
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

    def _pool(self, op: Op) -> list[int]:
        x = self.g.tensors[op.inputs[0]]
        in_h, in_w, c = _nhwc(x)
        spec = self._pool_spec(op, in_h, in_w)
        name = self._name("pool")
        step = PoolStep(
            name,
            "pool",
            [op.index],
            self.buffer(op.inputs[0]),
            self.buffer(op.outputs[0]),
            in_h=in_h,
            in_w=in_w,
            channels=c,
            pool=spec,
        )
        self._add(step, [op.inputs[0]], op.outputs[0])
        return [op.index]

    # --- FULLY_CONNECTED --------------------------------------------------------------

    def _fully_connected(self, op: Op) -> list[int]:
        opt = op.options
        assert isinstance(opt, FullyConnectedOptions)
        g = self.g
        x, w_t, y = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
        if opt.weights_format != 0:
            raise FirmwareExportError(f"{op.describe()}: shuffled weights format is not supported")
        w = np.asarray(w_t.data)
        if w.ndim != 2:
            raise FirmwareExportError(f"{op.describe()}: weights of rank {w.ndim}")
        n, k = int(w.shape[0]), int(w.shape[1])
        if x.size != k:
            raise FirmwareExportError(
                f"{op.describe()}: input of {x.size} values for {k} "
                "weights per row (batch must be 1)"
            )
        if y.size != n:
            raise FirmwareExportError(f"{op.describe()}: output of {y.size} values for {n} rows")
        bias = self._bias(op, n)
        zp_in, zp_out = _zp(x), _zp(y)
        mult, shift = self._multipliers(x, w_t, y, n, per_tensor_fc=True)
        act_min, act_max = qm.activation_range(_act_name(opt.activation), _scale(y), zp_out)
        folded = self._fold_bias(op, bias, w, zp_in)
        table, t_last, chain = self._elementwise_chain(op.outputs[0])
        name = self._name("fc")
        assert w_t.quant is not None
        step = FullyConnectedStep(
            name,
            "fully_connected",
            [op.index, *chain],
            self.buffer(op.inputs[0]),
            self.buffer(t_last),
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
        step.fast = _fast_requant(shift, zp_out, _acc_bound(folded, w))
        step.scratch = 2 * step.in_padded  # the input as int16 pairs (DSP and SIMD paths)
        self._add(step, [op.inputs[0]], t_last)
        return [op.index, *chain]

    # --- SOFTMAX ----------------------------------------------------------------------

    def _softmax(self, op: Op) -> list[int]:
        opt = op.options
        assert isinstance(opt, SoftmaxOptions)
        x, y = self.g.tensors[op.inputs[0]], self.g.tensors[op.outputs[0]]
        if _zp(y) != -128 or _scale(y) != 1.0 / 256:
            raise FirmwareExportError(
                f"{op.describe()}: output scale {_scale(y)!r} and zero "
                f"point {_zp(y)}; TFLM's int8 softmax needs 1/256 and -128"
            )
        depth = x.shape[-1] if x.shape else 1
        if not 1 <= depth <= 4095:
            raise FirmwareExportError(f"{op.describe()}: depth {depth} out of 1..4095")
        params = qm.softmax_params(float(np.float32(opt.beta)), _scale(x))
        step = SoftmaxStep(
            self._name("softmax"),
            "softmax",
            [op.index],
            self.buffer(op.inputs[0]),
            self.buffer(op.outputs[0]),
            rows=x.size // depth,
            depth=depth,
            exp_table=qm.softmax_exp_table(params),
        )
        self._add(step, [op.inputs[0]], op.outputs[0])
        return [op.index]


# ----------------------------------------------------------------------------- memory


def _merge(planner: _Planner, keep: Buffer, gone: Buffer) -> None:
    """Make ``gone`` share ``keep``'s memory (in-place step)."""
    keep.tensors += gone.tensors
    keep.first = min(keep.first, gone.first)
    keep.last = max(keep.last, gone.last)
    if gone.location == "output":
        keep.location = "output"
    for step in planner.steps:
        if step.src is gone:
            step.src = keep
        if step.dst is gone:
            step.dst = keep
    for r, b in list(planner.buffers.items()):
        if b is gone:
            planner.buffers[r] = keep


def _assign_memory(planner: _Planner) -> tuple[list[Buffer], int]:
    g = planner.g
    in_buf = planner.buffer(g.inputs[0])
    out_buf = planner.buffer(g.outputs[0])
    in_buf.location = "input"
    if out_buf is in_buf:
        # The model is a pure reshape of its input: copy it out.
        copy_dst = Buffer(planner._next_buffer, in_buf.size, "output", [])
        planner._next_buffer += 1
        identity = Table(list(range(-128, 128)), ["copy"])
        planner.steps.append(
            LutStep(
                "copy",
                "lut",
                [],
                in_buf,
                copy_dst,
                size=in_buf.size,
                table=identity,
                out_tensor=g.outputs[0],
            )
        )
        in_buf.last = len(planner.steps) - 1
        copy_dst.first = copy_dst.last = len(planner.steps) - 1
        planner.buffers[-1] = copy_dst
    else:
        out_buf.location = "output"

    # In place: elementwise steps and softmax overwrite an arena input that dies with them.
    for i, step in enumerate(planner.steps):
        if step.kind not in ("lut", "softmax"):
            continue
        src, dst = step.src, step.dst
        if src.location == "arena" and src.last == i and src.size == dst.size:
            _merge(planner, src, dst)

    buffers = sorted({id(b): b for b in planner.buffers.values()}.values(), key=lambda b: b.id)
    arena = _place(planner, buffers)
    # Wider tile strips (fewer tile refills) where that does not grow the arena.
    for step in planner.steps:
        if not isinstance(step, ConvStep) or step.tile is None:
            continue
        tp, n_maps = step.tile, len(step.patch_channels)
        for windows in range(tp.blocks_w, 1, -1):
            shape = tp.shape
            if (shape.rows - 1) * shape.width(windows) + shape.kw > tile.LDRD_MAX_WORDS:
                continue
            narrow = tp.windows
            tp.windows = windows
            step.scratch = tp.scratch(n_maps)
            if _place(planner, buffers) <= arena:
                break
            tp.windows = narrow
            step.scratch = tp.scratch(n_maps)
        arena = _place(planner, buffers)
    return buffers, arena


def _place(planner: _Planner, buffers: list[Buffer]) -> int:
    """Place the arena buffers and kernel scratch areas; return the arena size."""
    # Items to place: arena buffers, plus each step's kernel scratch (lifetime = that step).
    items: list[tuple[int, int, int, object]] = []  # (size, first, last, owner)
    for b in buffers:
        if b.location == "arena":
            items.append((b.size, b.first, b.last, b))
    for i, step in enumerate(planner.steps):
        if step.scratch:
            items.append((step.scratch, i, i, step))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    order = sorted(range(len(items)), key=lambda k: (-items[k][0], items[k][1], k))
    arena = 0
    for k in order:
        size, first, last, owner = items[k]
        conflicts = sorted((o, s) for o, s, f, la in placed if not (la < first or last < f))
        offset = 0
        for o, s in conflicts:
            if offset + size <= o:
                break
            offset = max(offset, -(-(o + s) // ARENA_ALIGN) * ARENA_ALIGN)
        placed.append((offset, size, first, last))
        arena = max(arena, offset + size)
        if isinstance(owner, Buffer):
            owner.offset = offset
        else:
            assert isinstance(owner, Step)
            owner.scratch_offset = offset
    return -(-arena // ARENA_ALIGN) * ARENA_ALIGN


def _info(t: Tensor) -> TensorInfo:
    q = t.quant
    return TensorInfo(t.shape, q.scale if q else 0.0, q.zero_point if q else 0, t.dtype, t.index)


def strip_boundary(g: Graph) -> tuple[Graph, list[Op]]:
    """The int8 core of ``g``: without the QUANTIZE/DEQUANTIZE that ``--io float32`` or
    ``--io uint8`` leave at the model's edges (see ``reader.find_boundary``)."""
    b = find_boundary(g)
    if not b.ops:
        return g, []
    inputs = (b.input_op.outputs[0],) if b.input_op else g.inputs
    outputs = (b.output_op.inputs[0],) if b.output_op else g.outputs
    ops = tuple(op for op in g.ops if op not in b.ops)
    return dataclasses.replace(g, ops=ops, inputs=inputs, outputs=outputs), b.ops


def build_plan(model: Graph) -> Plan:
    """Lower ``model`` (already checked by ``reader.check_graph``) to a :class:`Plan`."""
    g, stripped = strip_boundary(model)
    planner = _Planner(g)
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
    buffers, arena = _assign_memory(planner)
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
    )


def weight_bytes(plan: Plan) -> dict[str, int]:
    """Bytes of constant data per kind, as emitted in the standalone engine."""
    out = {"weights": 0, "bias": 0, "requant": 0, "tables": 0, "index": 0}
    for s in plan.steps:
        if isinstance(s, ConvStep) and s.tile is not None:
            tp = s.tile
            out["weights"] += 4 * int(tp.weights.size)
            out["bias"] += 4 * len(tp.bias)
            out["requant"] += 12 * len(s.multiplier)
            if s.patch_channels != list(range(s.in_c)):
                out["index"] += 2 * len(s.patch_channels)
            if not tp.dense:
                words = tp.shape.rows * tp.width * max(tp.maps, default=0)
                out["index"] += 2 * len(tp.map_start) + (2 if words <= 0xFFFF else 4) * len(tp.maps)
            clamp = (s.act_min, s.act_max) != (-128, 127)
            out["tables"] += TABLE_BYTES if s.table or clamp else 0
        elif isinstance(s, ConvStep):
            out["weights"] += int(s.weights.size)
            out["bias"] += 4 * len(s.bias)
            out["requant"] += 8 * len(s.multiplier)
            out["index"] += 2 * (len(s.patch_channels) + len(s.run_start) + 2 * len(s.run_offset))
            out["tables"] += TABLE_BYTES if s.table else 0
        elif isinstance(s, FullyConnectedStep):
            out["weights"] += s.rows_padded * s.in_padded
            out["bias"] += 4 * len(s.bias)
            out["requant"] += (12 if s.fast else 8) * len(s.multiplier)
            out["tables"] += TABLE_BYTES if s.table else 0
        elif isinstance(s, LutStep):
            out["tables"] += TABLE_BYTES
        elif isinstance(s, SoftmaxStep):
            out["tables"] += 4 * 256
    return out
