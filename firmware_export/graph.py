"""The typed graph: what a ``.tflite`` model says, independent of the flatbuffer library.

``reader.read_model`` builds a :class:`Graph`; ``plan.build_plan`` lowers it to engine steps.
Nothing here knows about C. Quantization scales are kept as the float32 values stored in the
model (as Python floats, which represent every float32 exactly), because TFLM derives its
multipliers from exactly those values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Padding(enum.Enum):
    """Convolution and pooling padding (TFLite ``Padding``)."""

    SAME = "SAME"
    VALID = "VALID"


class Activation(enum.Enum):
    """Fused activation (TFLite ``ActivationFunctionType``)."""

    NONE = "NONE"
    RELU = "RELU"
    RELU_N1_TO_1 = "RELU_N1_TO_1"
    RELU6 = "RELU6"
    TANH = "TANH"
    SIGN_BIT = "SIGN_BIT"


@dataclass(frozen=True)
class Quant:
    """Affine quantization: ``real = scale * (q - zero_point)``, per tensor or per ``axis``."""

    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    @property
    def scale(self) -> float:
        """The per-tensor scale (the first one for a per-channel tensor)."""
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        """The per-tensor zero point (the first one for a per-channel tensor)."""
        return self.zero_points[0]


@dataclass(frozen=True, eq=False)
class Tensor:
    """One tensor of the graph. ``data`` holds the contents of a constant tensor."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # TFLite TensorType name: "INT8", "INT32", "FLOAT32", ...
    quant: Quant | None = None
    data: np.ndarray | None = field(default=None, repr=False)
    shape_signature: tuple[int, ...] | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    def describe(self) -> str:
        """A short human-readable reference for error messages."""
        return f"tensor {self.index} '{self.name}'"


# ----------------------------------------------------------------------------- op options


@dataclass(frozen=True)
class NoOptions:
    """Ops without options (LOGISTIC, TANH, RELU, RELU6, QUANTIZE, DEQUANTIZE)."""


@dataclass(frozen=True)
class Conv2DOptions:
    padding: Padding
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    activation: Activation


@dataclass(frozen=True)
class Pool2DOptions:
    padding: Padding
    stride_h: int
    stride_w: int
    filter_h: int
    filter_w: int
    activation: Activation


@dataclass(frozen=True)
class FullyConnectedOptions:
    activation: Activation
    keep_num_dims: bool
    weights_format: int  # 0 = DEFAULT; anything else is a packed/shuffled format


@dataclass(frozen=True)
class SoftmaxOptions:
    beta: float


@dataclass(frozen=True)
class ReshapeOptions:
    new_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class StridedSliceOptions:
    begin_mask: int
    end_mask: int
    ellipsis_mask: int
    new_axis_mask: int
    shrink_axis_mask: int
    offset: bool


@dataclass(frozen=True)
class PackOptions:
    values_count: int
    axis: int


OpOptions = (
    NoOptions
    | Conv2DOptions
    | Pool2DOptions
    | FullyConnectedOptions
    | SoftmaxOptions
    | ReshapeOptions
    | StridedSliceOptions
    | PackOptions
)


@dataclass(frozen=True)
class Op:
    """One operator. ``inputs`` uses -1 for an omitted optional input (e.g. no bias)."""

    index: int
    kind: str  # TFLite BuiltinOperator name, e.g. "CONV_2D"
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: OpOptions
    version: int = 1  # the operator code's version

    def describe(self) -> str:
        return f"op {self.index} {self.kind}"


@dataclass(frozen=True)
class Graph:
    """A single-subgraph model: tensors, operators in execution order, graph inputs/outputs."""

    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""

    def consumers(self, tensor_index: int) -> list[Op]:
        """The ops that read ``tensor_index``, in execution order."""
        return [op for op in self.ops if tensor_index in op.inputs]

    def producer(self, tensor_index: int) -> Op | None:
        """The op that writes ``tensor_index`` (None for graph inputs and constants)."""
        for op in self.ops:
            if tensor_index in op.outputs:
                return op
        return None

    @property
    def op_kinds(self) -> list[str]:
        """Distinct op kinds in first-use order."""
        seen: list[str] = []
        for op in self.ops:
            if op.kind not in seen:
                seen.append(op.kind)
        return seen
