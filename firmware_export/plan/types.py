"""The engine plan: constants and the typed steps, buffers and tables the C writer renders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firmware_export import tile

#: Ops that become (part of) an int8 -> int8 table.
ELEMENTWISE_OPS = frozenset({"LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE"})
#: Alignment of every buffer in the scratch arena (int32 accumulators live there too).
ARENA_ALIGN = 4
ACC_LIMIT = (1 << 31) - 1
#: Convolution outputs per pass over the weights of the generic kernel (<PREFIX>_CONV_BLOCK
#: in C), by ``--optimize`` mode: ``size`` takes half the patch scratch for about 10% more
#: weight loads.
CONV_BLOCKS = {"speed": 4, "size": 2}
CONV_BLOCK = CONV_BLOCKS["speed"]
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
    ``(2 * acc) * multiplier`` (one ``SMMULR``), then ``(x + (acc >> 31) + round) >> rshift``
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

    def row_blocks(self) -> list[int]:
        """Rows per weight block: FC_ROWS each, then 2 and 1 for the rest (no padded rows)."""
        rest = self.out_size % FC_ROWS
        return [FC_ROWS] * (self.out_size // FC_ROWS) + [2] * (rest // 2) + [1] * (rest % 2)

    def offset_bias(self) -> list[int]:
        """The bias for weights and inputs offset by 128 (the kernels compute on unsigned
        bytes): sum w (x - zp) = sum (w + 128)(x + 128) - 128 sum (x + 128) - (zp + 128) sum w,
        so the folded bias loses 128 * the row sum; kept modulo 2^32 (the kernels' sums are)."""
        rows = self.weights.astype(np.int64).sum(axis=1)
        return [
            ((int(b) - 128 * int(r) + (1 << 31)) % (1 << 32)) - (1 << 31)
            for b, r in zip(self.bias, rows, strict=True)
        ]

    def packed_weights(self) -> np.ndarray:
        """The weights as uint8 w + 128 in row blocks (``row_blocks``), each block
        [in_padded / 4][rows][4] with zero bytes beyond in_size: one pass over a block reads
        its weights in order, four inputs of each of its rows at a time."""
        u = np.zeros((self.out_size, self.in_padded), np.uint8)
        u[:, : self.in_size] = (self.weights.astype(np.int16) + 128).astype(np.uint8)
        groups = self.in_padded // 4
        parts, r = [], 0
        for rows in self.row_blocks():
            block = u[r : r + rows].reshape(rows, groups, 4).transpose(1, 0, 2)
            parts.append(np.ascontiguousarray(block).reshape(-1))
            r += rows
        return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


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
    """``exp_table`` is None when the kernel computes exp (``--optimize size``) from the
    three ``CalculateSoftmaxParams`` values instead."""

    rows: int = 0
    depth: int = 0
    exp_table: list[int] | None = None
    input_multiplier: int = 0
    input_left_shift: int = 0
    diff_min: int = 0


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
    optimize: str = "speed"

    @property
    def conv_block(self) -> int:
        """<PREFIX>_CONV_BLOCK: the generic convolution's outputs per pass."""
        return CONV_BLOCKS[self.optimize]

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
                n = len(tp.maps) + s.out_c  # offsets plus one end marker per channel
                out["index"] += (2 if words < 0xFFFF else 4) * n
            clamp = (s.act_min, s.act_max) != (-128, 127)
            out["tables"] += TABLE_BYTES if s.table or clamp else 0
        elif isinstance(s, ConvStep):
            out["weights"] += int(s.weights.size)
            out["bias"] += 4 * len(s.bias)
            out["requant"] += 5 * len(s.multiplier)  # int32 multiplier, int8 shift
            out["index"] += 2 * (len(s.patch_channels) + len(s.run_start) + 2 * len(s.run_offset))
            out["tables"] += TABLE_BYTES if s.table else 0
        elif isinstance(s, FullyConnectedStep):
            out["weights"] += s.out_size * s.in_padded
            out["bias"] += 4 * len(s.bias)
            out["requant"] += 5 * len(s.multiplier)  # int32 multiplier, int8 shift
            out["tables"] += TABLE_BYTES if s.table else 0
        elif isinstance(s, LutStep):
            out["tables"] += TABLE_BYTES
        elif isinstance(s, SoftmaxStep) and s.exp_table is not None:
            out["tables"] += 4 * len(s.exp_table)
    return out
