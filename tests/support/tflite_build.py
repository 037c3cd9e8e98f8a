"""Build small .tflite models for tests with the maintained schema's object API.

Used to make single-op models with chosen quantization (to check export-time tables against
the TFLM interpreter on all 256 int8 inputs) and malformed models (for the error cases), and
to re-target an existing model's output at an intermediate tensor.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as s

_DTYPES = {
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "FLOAT32": np.float32,
    "INT64": np.int64,
}


def _pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class ModelBuilder:
    """Accumulate tensors and ops, then :meth:`build` a single-subgraph model."""

    def __init__(self) -> None:
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [s.BufferT()]
        self.ops: list[Any] = []
        self.codes: list[int] = []

    def tensor(
        self,
        shape: list[int],
        dtype: str = "INT8",
        scale: float | list[float] | None = None,
        zero_point: int | list[int] | None = None,
        data: Any = None,
        axis: int = 0,
        name: str | None = None,
    ) -> int:
        t = s.TensorT()
        t.shape = list(shape)
        t.type = getattr(s.TensorType, dtype)
        t.name = name or f"t{len(self.tensors)}"
        if scale is not None:
            q = s.QuantizationParametersT()
            scales = scale if isinstance(scale, list) else [scale]
            zps = zero_point if isinstance(zero_point, list) else [zero_point or 0] * len(scales)
            q.scale = [float(v) for v in scales]
            q.zeroPoint = [int(v) for v in zps]
            q.quantizedDimension = axis
            t.quantization = q
        if data is not None:
            buf = s.BufferT()
            buf.data = list(np.asarray(data, dtype=_DTYPES[dtype]).tobytes())
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        else:
            self.buffers.append(s.BufferT())
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(
        self,
        kind: str,
        inputs: list[int],
        outputs: list[int],
        options: Any = None,
        options_type: str | None = None,
    ) -> None:
        code = getattr(s.BuiltinOperator, kind)
        if code not in self.codes:
            self.codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type or "")
            o.builtinOptions = options
        self.ops.append(o)

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        m = s.ModelT()
        m.version = 3
        m.description = "test model"
        codes = []
        for c in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        sg = s.SubGraphT()
        sg.tensors = self.tensors
        sg.operators = self.ops
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        m.subgraphs = [sg]
        m.buffers = self.buffers
        return _pack(m)


def single_op_model(
    kind: str,
    n: int,
    in_scale: float,
    in_zp: int,
    out_scale: float,
    out_zp: int,
    options: Any = None,
    options_type: str | None = None,
) -> bytes:
    """``input[1, n] -> kind -> output[1, n]``, int8 with the given quantization."""
    b = ModelBuilder()
    x = b.tensor([1, n], "INT8", in_scale, in_zp, name="x")
    y = b.tensor([1, n], "INT8", out_scale, out_zp, name="y")
    b.op(kind, [x], [y], options, options_type)
    return b.build([x], [y])


def retarget_output(model_bytes: bytes, tensor: int) -> bytes:
    """The same model with its single output moved to ``tensor`` (ops after it stay)."""
    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    m.subgraphs[0].outputs = [tensor]
    m.signatureDefs = None
    return _pack(m)


def edit_model(model_bytes: bytes) -> Any:
    """The object-API model, to be modified and passed to :func:`pack`."""
    return s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)


def pack(model: Any) -> bytes:
    """Serialize an object-API model."""
    m = model
    return _pack(m)
