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

The modules follow that pipeline: ``types`` (the plan), ``planner`` (graph walk, folding,
aliases, ``build_plan``), ``lower_common`` / ``lower_conv`` / ``lower_fc`` / ``lower_other``
(one op's lowering), ``arena`` (in-place merges, tile widening) over ``memory`` (a greedy
planner of buffer lifetimes that knows nothing of the rest).
"""

from __future__ import annotations

from firmware_export.cflags import OPTIMIZE_MODES
from firmware_export.plan.lower_common import fast_requant
from firmware_export.plan.planner import build_plan, strip_boundary
from firmware_export.plan.types import (
    ACC_LIMIT,
    ARENA_ALIGN,
    CONV_BLOCK,
    CONV_BLOCKS,
    ELEMENTWISE_OPS,
    FAST_ACC_LIMIT,
    FC_ROWS,
    TABLE_BYTES,
    Buffer,
    ConvStep,
    FastRequant,
    FullyConnectedStep,
    LutStep,
    Plan,
    PoolSpec,
    PoolStep,
    SoftmaxStep,
    Step,
    Table,
    TensorInfo,
    TilePlan,
    weight_bytes,
)

__all__ = [
    "ACC_LIMIT",
    "ARENA_ALIGN",
    "CONV_BLOCK",
    "CONV_BLOCKS",
    "ELEMENTWISE_OPS",
    "FAST_ACC_LIMIT",
    "FC_ROWS",
    "OPTIMIZE_MODES",
    "TABLE_BYTES",
    "Buffer",
    "ConvStep",
    "FastRequant",
    "FullyConnectedStep",
    "LutStep",
    "Plan",
    "PoolSpec",
    "PoolStep",
    "SoftmaxStep",
    "Step",
    "Table",
    "TensorInfo",
    "TilePlan",
    "build_plan",
    "fast_requant",
    "strip_boundary",
    "weight_bytes",
]
