"""Read a ``.tflite`` flatbuffer into a typed :class:`~firmware_export.graph.Graph`.

Parsing uses the schema module maintained with LiteRT (``ai_edge_litert.schema_py_generated``),
never hand-written offsets. :func:`read_model` only decodes; :func:`load_graph` adds
:func:`firmware_export.checks.check_graph`, which lists every reason the graph cannot be
exported, so the user sees all of them in one line.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from firmware_export.checks import SUPPORTED_OPS, check_graph
from firmware_export.errors import FirmwareExportError
from firmware_export.graph import (
    Activation,
    Conv2DOptions,
    FullyConnectedOptions,
    Graph,
    NoOptions,
    Op,
    OpOptions,
    PackOptions,
    Padding,
    Pool2DOptions,
    Quant,
    ReshapeOptions,
    SoftmaxOptions,
    StridedSliceOptions,
    Tensor,
)

_NUMPY_DTYPES: dict[str, Any] = {
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FLOAT32": np.float32,
    "FLOAT64": np.float64,
    "BOOL": np.bool_,
}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise FirmwareExportError(
            f"the TFLite schema module is unavailable ({exc}); pip install ai-edge-litert"
        ) from None
    return schema_py_generated


def _enum_names(cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


#: The object-API class of the builtin options each supported op must carry.
_OPTION_CLASSES = {
    "CONV_2D": "Conv2DOptionsT",
    "AVERAGE_POOL_2D": "Pool2DOptionsT",
    "MAX_POOL_2D": "Pool2DOptionsT",
    "FULLY_CONNECTED": "FullyConnectedOptionsT",
    "SOFTMAX": "SoftmaxOptionsT",
    "RESHAPE": "ReshapeOptionsT",
    "STRIDED_SLICE": "StridedSliceOptionsT",
    "PACK": "PackOptionsT",
}


def _options(kind: str, raw: Any, s: Any) -> OpOptions:
    expected = _OPTION_CLASSES.get(kind)
    if raw is not None and expected is not None and type(raw).__name__ != expected:
        raise FirmwareExportError(
            f"{kind} carries {type(raw).__name__.removesuffix('T')} instead of "
            f"{expected.removesuffix('T')} (corrupt model?)"
        )
    act_names = _enum_names(s.ActivationFunctionType)
    pad_names = _enum_names(s.Padding)

    def act(code: int) -> Activation:
        name = act_names.get(code)
        if name is None:
            raise FirmwareExportError(f"{kind}: unknown fused activation code {code}")
        return Activation(name)

    def pad(code: int) -> Padding:
        name = pad_names.get(code)
        if name is None:
            raise FirmwareExportError(f"{kind}: unknown padding code {code}")
        return Padding(name)

    if kind == "CONV_2D":
        if raw is None:
            raise FirmwareExportError("CONV_2D without options")
        return Conv2DOptions(
            pad(raw.padding),
            raw.strideH,
            raw.strideW,
            raw.dilationHFactor,
            raw.dilationWFactor,
            act(raw.fusedActivationFunction),
        )
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        if raw is None:
            raise FirmwareExportError(f"{kind} without options")
        return Pool2DOptions(
            pad(raw.padding),
            raw.strideH,
            raw.strideW,
            raw.filterHeight,
            raw.filterWidth,
            act(raw.fusedActivationFunction),
        )
    if kind == "FULLY_CONNECTED":
        if raw is None:
            return FullyConnectedOptions(Activation.NONE, False, 0)
        return FullyConnectedOptions(
            act(raw.fusedActivationFunction), bool(raw.keepNumDims), int(raw.weightsFormat)
        )
    if kind == "SOFTMAX":
        if raw is None:  # TFLM then runs with beta = 0 and aborts in its Prepare
            raise FirmwareExportError("SOFTMAX without options (no beta)")
        return SoftmaxOptions(float(raw.beta))
    if kind == "RESHAPE":
        shape = None
        if raw is not None and raw.newShape is not None:
            shape = tuple(int(d) for d in raw.newShape)
        return ReshapeOptions(shape)
    if kind == "STRIDED_SLICE":
        if raw is None:
            return StridedSliceOptions(0, 0, 0, 0, 0, False)
        return StridedSliceOptions(
            raw.beginMask,
            raw.endMask,
            raw.ellipsisMask,
            raw.newAxisMask,
            raw.shrinkAxisMask,
            bool(raw.offset),
        )
    if kind == "PACK":
        if raw is None:
            raise FirmwareExportError("PACK without options")
        return PackOptions(raw.valuesCount, raw.axis)
    return NoOptions()


#: (min inputs, max inputs, required leading inputs) of the ops the exporter reads; every
#: one of them has exactly one output. Optional inputs (a bias) may be -1.
_ARITY = {
    "CONV_2D": (2, 3, 2),
    "FULLY_CONNECTED": (2, 3, 2),
    "AVERAGE_POOL_2D": (1, 1, 1),
    "MAX_POOL_2D": (1, 1, 1),
    "LOGISTIC": (1, 1, 1),
    "TANH": (1, 1, 1),
    "RELU": (1, 1, 1),
    "RELU6": (1, 1, 1),
    "SOFTMAX": (1, 1, 1),
    "QUANTIZE": (1, 1, 1),
    "DEQUANTIZE": (1, 1, 1),
    "RESHAPE": (1, 2, 1),
    "SHAPE": (1, 1, 1),
    "STRIDED_SLICE": (4, 4, 4),
    "PACK": (1, 1 << 16, 1 << 16),
}


def _arity_problem(kind: str, inputs: tuple[int, ...], outputs: tuple[int, ...]) -> str | None:
    if kind not in _ARITY:
        return None
    lo, hi, required = _ARITY[kind]
    if not lo <= len(inputs) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 1 << 16 else f"at least {lo}"
        return f"{len(inputs)} inputs ({want} expected)"
    if any(x < 0 for x in inputs[:required]):
        return f"a required input is missing (inputs {list(inputs)})"
    if len(outputs) != 1:
        return f"{len(outputs)} outputs (1 expected)"
    return None


def _buffer_bytes(model: Any, model_bytes: bytes, index: int) -> bytes | None:
    if index <= 0 or model.buffers is None or index >= len(model.buffers):
        return None
    buf = model.buffers[index]
    if buf.data is not None and len(buf.data) > 0:
        return bytes(np.asarray(buf.data, dtype=np.uint8).tobytes())
    if buf.offset > 1 and buf.size > 0:  # large-model layout: data after the flatbuffer
        end = buf.offset + buf.size
        if end > len(model_bytes):
            raise FirmwareExportError(f"buffer {index} lies outside the file (truncated model?)")
        return model_bytes[buf.offset : end]
    return None


def read_model(model_bytes: bytes) -> Graph:
    """Decode a ``.tflite`` flatbuffer. Raises :class:`FirmwareExportError` when unreadable."""
    s = _schema()
    data = bytes(model_bytes)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise FirmwareExportError("not a TensorFlow Lite model (no TFL3 flatbuffer identifier)")
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # the generated code raises assorted errors on corrupt input
        why = (
            "an offset or a length points past its end"
            if isinstance(exc, (struct.error, IndexError))
            else f"inconsistent contents, {type(exc).__name__}"
        )
        raise FirmwareExportError(
            f"truncated or corrupted TensorFlow Lite flatbuffer ({len(data)} bytes: {why}); "
            "regenerate it"
        ) from None
    subgraphs = model.subgraphs or []
    if len(subgraphs) != 1:
        raise FirmwareExportError(
            f"the model has {len(subgraphs)} subgraphs; exactly 1 is supported (no control flow)"
        )
    sg = subgraphs[0]
    type_names = _enum_names(s.TensorType)
    op_names = _enum_names(s.BuiltinOperator)

    tensors: list[Tensor] = []
    n_buffers = len(model.buffers or [])
    for i, t in enumerate(sg.tensors or []):
        if not 0 <= t.buffer < max(n_buffers, 1):
            raise FirmwareExportError(
                f"tensor {i} '{_name(t.name)}' refers to buffer {t.buffer}, but the model "
                f"has {n_buffers} buffers (corrupt model?)"
            )
        dtype = type_names.get(t.type, f"TYPE_{t.type}")
        shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
        sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else None
        quant = None
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scales = tuple(float(np.float32(v)) for v in q.scale)
            zps = tuple(int(v) for v in q.zeroPoint) if q.zeroPoint is not None else ()
            quant = Quant(scales, zps, int(q.quantizedDimension))
        raw = _buffer_bytes(model, data, t.buffer)
        arr = None
        if raw is not None:
            np_dtype = _NUMPY_DTYPES.get(dtype)
            if any(d < 0 for d in shape):
                raise FirmwareExportError(
                    f"tensor {i} '{_name(t.name)}': constant with negative dimensions {list(shape)}"
                )
            if np_dtype is None:
                arr = np.frombuffer(raw, dtype=np.uint8).copy()
            else:
                count = math.prod(shape)
                itemsize = np.dtype(np_dtype).itemsize
                if len(raw) != count * itemsize:
                    raise FirmwareExportError(
                        f"tensor {i} '{_name(t.name)}': {len(raw)} data bytes for shape "
                        f"{list(shape)} of {dtype}"
                    )
                arr = np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()
        if t.isVariable:  # TFLM would allocate state for it (and crashes on odd ones)
            raise FirmwareExportError(
                f"tensor {i} '{_name(t.name)}' is a variable (stateful) tensor; export "
                "needs a stateless model"
            )
        if t.sparsity is not None:
            raise FirmwareExportError(
                f"tensor {i} '{_name(t.name)}' is sparse-encoded; export needs dense tensors"
            )
        tensors.append(Tensor(i, _name(t.name), shape, dtype, quant, arr, sig))

    ops: list[Op] = []
    codes = model.operatorCodes or []
    for i, o in enumerate(sg.operators or []):
        if o.opcodeIndex >= len(codes):
            raise FirmwareExportError(f"op {i} refers to a missing operator code")
        oc = codes[o.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        kind = op_names.get(code, f"BUILTIN_{code}")
        if kind == "CUSTOM":
            kind = f"CUSTOM({_name(oc.customCode)})"
        options: OpOptions = NoOptions()
        if kind in SUPPORTED_OPS:
            options = _options(kind, o.builtinOptions, s)
        inputs = tuple(int(x) for x in (o.inputs if o.inputs is not None else []))
        outputs = tuple(int(x) for x in (o.outputs if o.outputs is not None else []))
        for x in inputs + outputs:
            if x >= len(tensors) or x < -1:
                raise FirmwareExportError(f"op {i} {kind} refers to missing tensor {x}")
        if any(x < 0 for x in outputs):
            raise FirmwareExportError(f"op {i} {kind} writes to no tensor (index -1)")
        arity = _arity_problem(kind, inputs, outputs)
        if arity is not None:
            raise FirmwareExportError(f"op {i} {kind} has {arity}")
        ops.append(Op(i, kind, inputs, outputs, options, int(oc.version)))

    graph_io: dict[str, tuple[int, ...]] = {}
    for what, indices in (("input", sg.inputs), ("output", sg.outputs)):
        graph_io[what] = tuple(int(x) for x in (indices if indices is not None else []))
        for x in graph_io[what]:
            if not 0 <= x < len(tensors):
                raise FirmwareExportError(f"the model {what} refers to missing tensor {x}")
    return Graph(
        tensors=tuple(tensors),
        ops=tuple(ops),
        inputs=graph_io["input"],
        outputs=graph_io["output"],
        description=_name(model.description),
    )


def _name(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def load_graph(model_bytes: bytes) -> Graph:
    """:func:`read_model` then :func:`check_graph`; raise with every problem in one line."""
    g = read_model(model_bytes)
    problems = check_graph(g)
    if problems:
        raise FirmwareExportError("cannot export this model: " + "; ".join(problems))
    return g
