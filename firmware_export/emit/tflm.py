"""Render ``tflm/``: the flatbuffer as an aligned C array and a TFLM usage example."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_export.csyntax import Names, c_float, c_values, render
from firmware_export.errors import FirmwareExportError
from firmware_export.plan import TensorInfo

#: TfLiteTensor data field, C type and range of each supported interface type.
IO_FIELDS = {
    "INT8": ("int8", "int8_t", -128, 127),
    "UINT8": ("uint8", "uint8_t", 0, 255),
    "FLOAT32": ("f", "float", 0, 0),
}

#: MicroMutableOpResolver method for each op kind.
RESOLVER_METHODS = {
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "CONV_2D": "AddConv2D",
    "DEQUANTIZE": "AddDequantize",
    "FULLY_CONNECTED": "AddFullyConnected",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "PACK": "AddPack",
    "QUANTIZE": "AddQuantize",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "SHAPE": "AddShape",
    "SOFTMAX": "AddSoftmax",
    "STRIDED_SLICE": "AddStridedSlice",
    "TANH": "AddTanh",
}


@dataclass(frozen=True)
class Arena:
    """The TFLM arena: measured on this host, plus a margin."""

    measured: int
    host: str

    @property
    def margin(self) -> int:
        return -(-max(512, self.measured // 10) // 16) * 16

    @property
    def size(self) -> int:
        return -(-(self.measured + self.margin) // 16) * 16


def render_tflm(
    model_bytes: bytes,
    prefix: str,
    banner: str,
    op_kinds: list[str],
    arena: Arena,
    model_input: TensorInfo,
    model_output: TensorInfo,
) -> dict[str, str]:
    """Files of ``tflm/``, keyed by file name. ``model_input``/``model_output`` describe the
    .tflite model's own interface (int8, or float32/uint8 for ``--io`` models)."""
    n = Names(prefix)
    p, P = prefix, prefix.upper()
    for suffix in ("model_data", "model_data_len", "tflm_setup", "tflm_classify"):
        n(suffix)
    n.macro("MODEL_DATA_H")
    n.macro("MODEL_DATA_ALIGN")
    missing = [k for k in op_kinds if k not in RESOLVER_METHODS]
    if missing:
        raise FirmwareExportError(f"no TFLM resolver method known for {', '.join(missing)}")
    for t in (model_input, model_output):
        if t.dtype not in IO_FIELDS:
            raise FirmwareExportError(f"model interface of type {t.dtype} is not supported")
    common = {"banner": banner, "p": p, "P": P, "model_bytes": len(model_bytes)}
    return {
        f"{p}_model_data.h": render("model_data.h.j2", **common),
        f"{p}_model_data.c": render(
            "model_data.c.j2", **common, body=c_values(list(model_bytes), per_line=16)
        ),
        f"{p}_tflm_example.cc": render(
            "tflm_example.cc.j2",
            **common,
            resolver_calls=[RESOLVER_METHODS[k] for k in op_kinds],
            op_count=len(op_kinds),
            arena_measured=arena.measured,
            arena_host=arena.host,
            arena_margin=arena.margin,
            arena_size=arena.size,
            input_dtype=model_input.dtype,
            input_field=IO_FIELDS[model_input.dtype][0],
            input_ctype=IO_FIELDS[model_input.dtype][1],
            input_min=IO_FIELDS[model_input.dtype][2],
            input_max=IO_FIELDS[model_input.dtype][3],
            input_scale=c_float(model_input.scale) if model_input.dtype != "FLOAT32" else "",
            input_zp=model_input.zero_point,
            input_size=model_input.size,
            output_field=IO_FIELDS[model_output.dtype][0],
            output_size=model_output.size,
            input_shape="x".join(str(d) for d in model_input.shape),
        ),
    }
