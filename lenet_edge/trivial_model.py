"""A model that does (almost) nothing, with the same input and output tensors as a given one.

LiteRT is timed from Python, one image per call (``set_tensor``, ``invoke``, ``get_tensor``),
while the C engine is timed inside C. Timing the very same loop on this model measures what
that loop costs apart from the network's kernels (the Python calls, the interpreter's entry,
the delegate's dispatch, the copies in and out), so that the bench can give LiteRT's kernel
time with and without it. Batching cannot take the loop out instead: the XNNPACK delegate
refuses ``resize_tensor_input`` on the seed model, whose RESHAPE has a fixed shape.

The graph is ``RESHAPE`` (to ``[1, N]``) -> ``SLICE`` (the first M values) -> ``QUANTIZE``
(requantize to the output's scale and zero point), every tensor int8 (or uint8) like the
model's own input and output. XNNPACK takes all three ops (one delegated partition): its
SLICE needs equal quantization on both sides, hence the separate requantization. It is
written with the flatbuffer schema bindings that ship with LiteRT, so it is the same bytes on
every run and never needs TensorFlow.
"""

from __future__ import annotations

import copy
from math import prod
from typing import Any

import flatbuffers
import numpy as np

from lenet_edge.errors import LenetEdgeError

#: The dtypes the trivial model supports at its interface (as the schema names them).
_SUPPORTED = ("INT8", "UINT8")


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def trivial_model(model_bytes: bytes) -> bytes:
    """A ``.tflite`` model with the input and output tensors of ``model_bytes`` (name, shape,
    dtype, quantization) and no arithmetic but a copy and one requantization."""
    s = _schema()
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
        graph = model.subgraphs[0]
        t_in = copy.deepcopy(graph.tensors[graph.inputs[0]])
        t_out = copy.deepcopy(graph.tensors[graph.outputs[0]])
    except Exception as exc:  # a flatbuffer the bindings cannot read
        raise LenetEdgeError(f"trivial model: cannot read the model ({exc})") from None
    type_names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    kinds = (type_names.get(t_in.type), type_names.get(t_out.type))
    if kinds[0] != kinds[1] or kinds[0] not in _SUPPORTED:
        raise LenetEdgeError(
            f"trivial model: input {kinds[0]} and output {kinds[1]}; only an int8 or uint8 "
            "model with the same type at both ends is supported"
        )
    n_in, n_out = prod(t_in.shape), prod(t_out.shape)
    if n_out > n_in or t_in.quantization is None or t_out.quantization is None:
        raise LenetEdgeError(
            "trivial model: the output must be quantized and no larger than the input"
        )
    tensors: list[Any] = []
    buffers: list[Any] = [s.BufferT()]  # buffer 0: the schema's empty sentinel

    def add(tensor: Any, data: np.ndarray | None = None) -> int:
        buf = s.BufferT()
        if data is not None:
            buf.data = list(data.tobytes())
        buffers.append(buf)
        tensor.buffer = len(buffers) - 1
        tensors.append(tensor)
        return len(tensors) - 1

    def constant(name: str, values: list[int]) -> int:
        t = s.TensorT()
        t.shape, t.type, t.name = [len(values)], s.TensorType.INT32, name
        return add(t, np.asarray(values, dtype=np.int32))

    flat = copy.deepcopy(t_in)
    flat.shape, flat.shapeSignature, flat.name = [1, n_in], None, "trivial/flat"
    head = copy.deepcopy(flat)  # SLICE keeps the input's quantization (XNNPACK requires it)
    head.shape, head.name = [1, n_out], "trivial/head"
    x = add(t_in)
    shape = constant("trivial/shape", [1, n_in])
    begin = constant("trivial/begin", [0, 0])
    size = constant("trivial/size", [1, n_out])
    f = add(flat)
    h = add(head)
    y = add(t_out)

    codes: list[Any] = []
    ops: list[Any] = []

    def op(kind: str, inputs: list[int], output: int, options: Any, options_type: str) -> None:
        code = s.OperatorCodeT()
        code.builtinCode = getattr(s.BuiltinOperator, kind)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = 1
        codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = len(codes) - 1, inputs, [output]
        o.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
        o.builtinOptions = options
        ops.append(o)

    reshape = s.ReshapeOptionsT()
    reshape.newShape = [1, n_in]
    op("RESHAPE", [x, shape], f, reshape, "ReshapeOptions")
    op("SLICE", [f, begin, size], h, s.SliceOptionsT(), "SliceOptions")
    op("QUANTIZE", [h], y, s.QuantizeOptionsT(), "QuantizeOptions")

    sub = s.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs = tensors, ops, [x], [y]
    sub.name = "trivial"
    out = s.ModelT()
    out.version = 3
    out.description = "lenet-edge trivial model: the loop overhead of a per-image benchmark"
    out.operatorCodes, out.subgraphs, out.buffers = codes, [sub], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(out.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
