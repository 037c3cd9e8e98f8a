"""export-c: bad input writes nothing and exits 1 with one line listing what is wrong."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as s

from firmware_export.errors import FirmwareExportError
from firmware_export.plan import build_plan
from firmware_export.reader import load_graph, read_model
from lenet_edge.cli import main
from tests.support.tflite_build import ModelBuilder, edit_model, pack, single_op_model


def fc_model(
    batch: int = 1,
    dtype: str = "INT8",
    scale: float | None = 0.02,
    w_scale: float = 0.01,
    extra_op: str | None = None,
) -> bytes:
    """input[batch, 8] -> FULLY_CONNECTED(4) [-> extra_op] -> output."""
    b = ModelBuilder()
    quant = {"scale": scale, "zero_point": 0} if scale is not None else {}
    x = b.tensor([batch, 8], dtype, **quant)
    w = b.tensor([4, 8], "INT8", w_scale, 0, data=np.ones((4, 8), np.int8))
    bias = b.tensor([4], "INT32", 0.0002, 0, data=np.zeros(4, np.int32))
    y = b.tensor([batch, 4], dtype, **quant)
    opts = s.FullyConnectedOptionsT()
    b.op("FULLY_CONNECTED", [x, w, bias], [y], opts, "FullyConnectedOptions")
    out = y
    if extra_op:
        z = b.tensor([batch, 4], dtype, **quant)
        b.op(extra_op, [y, y] if extra_op == "ADD" else [y], [z])
        out = z
    return b.build([x], [out])


def problems(model: bytes) -> str:
    with pytest.raises(FirmwareExportError) as info:
        build_plan(load_graph(model))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_valid_tiny_model_is_accepted() -> None:
    plan = build_plan(load_graph(fc_model()))
    assert [st.kind for st in plan.steps] == ["fully_connected"]


def test_float_model() -> None:
    b = ModelBuilder()
    x = b.tensor([1, 8], "FLOAT32")
    w = b.tensor([4, 8], "FLOAT32", data=np.ones((4, 8), np.float32))
    y = b.tensor([1, 4], "FLOAT32")
    b.op("FULLY_CONNECTED", [x, w, -1], [y], s.FullyConnectedOptionsT(), "FullyConnectedOptions")
    assert "float model" in problems(b.build([x], [y]))


def test_real_float_model_from_the_converter(trained_model: Any) -> None:
    from firmware_export.sysutil import quiet_stderr
    from lenet_edge.model import load_keras_model
    from lenet_edge.tfenv import tf

    model = load_keras_model(str(trained_model() / "model.keras"))
    with quiet_stderr():
        flat = tf().lite.TFLiteConverter.from_keras_model(model).convert()
    msg = problems(flat)
    assert msg.startswith("cannot export this model: float model")
    assert "lenet-edge quantize" in msg


def test_int8_model_with_float_interface_is_accepted(int8_model: Any) -> None:
    """--io float32: the edge conversions are left to the application (see engine tests)."""
    plan = build_plan(load_graph(int8_model(io="float32").read_bytes()))
    assert plan.model_input is not None and plan.model_input.dtype == "FLOAT32"
    assert plan.input.dtype == "INT8" and len(plan.stripped_ops) == 2


def test_rescaling_uint8_edge_is_rejected() -> None:
    b = ModelBuilder()
    x = b.tensor([1, 8], "UINT8", 0.02, 128)
    q = b.tensor([1, 8], "INT8", 0.04, 0)
    b.op("QUANTIZE", [x], [q])
    w = b.tensor([4, 8], "INT8", 0.01, 0, data=np.ones((4, 8), np.int8))
    y = b.tensor([1, 4], "INT8", 0.1, 0)
    b.op("FULLY_CONNECTED", [q, w, -1], [y], s.FullyConnectedOptionsT(), "FullyConnectedOptions")
    assert "only the exact shift by 128" in problems(b.build([x], [y]))


def test_float_conversion_inside_the_graph_is_rejected() -> None:
    b = ModelBuilder()
    x = b.tensor([1, 8], "INT8", 0.02, 0)
    f = b.tensor([1, 8], "FLOAT32")
    q = b.tensor([1, 8], "INT8", 0.02, 0)
    y = b.tensor([1, 8], "INT8", 1 / 256, -128)
    b.op("DEQUANTIZE", [x], [f])
    b.op("QUANTIZE", [f], [q])
    b.op("LOGISTIC", [q], [y])
    msg = problems(b.build([x], [y]))
    assert "unsupported op DEQUANTIZE" in msg and "float model" in msg


def test_unsupported_ops_are_all_listed() -> None:
    msg = problems(fc_model(extra_op="ADD"))
    assert "unsupported op ADD" in msg
    b = ModelBuilder()
    x = b.tensor([1, 4, 4, 2], "INT8", 0.1, 0)
    w = b.tensor([1, 3, 3, 2], "INT8", 0.1, 0, data=np.ones((1, 3, 3, 2), np.int8))
    y = b.tensor([1, 4, 4, 2], "INT8", 0.1, 0)
    z = b.tensor([1, 4, 4, 2], "INT8", 0.1, 0)
    b.op("DEPTHWISE_CONV_2D", [x, w, -1], [y])
    b.op("ADD", [y, y], [z])
    msg = problems(b.build([x], [z]))
    assert "unsupported ops ADD, DEPTHWISE_CONV_2D" in msg


def test_batch_other_than_one() -> None:
    assert "batch 2" in problems(fc_model(batch=2))


def test_non_int8_tensor() -> None:
    msg = problems(_int16_logistic())
    assert "non-int8" in msg and "INT16" in msg


def _int16_logistic() -> bytes:
    b = ModelBuilder()
    x = b.tensor([1, 4], "INT16", 1 / 4096, 0)
    y = b.tensor([1, 4], "INT16", 1 / 32768, 0)
    b.op("LOGISTIC", [x], [y])
    return b.build([x], [y])


def test_missing_quantization_parameters() -> None:
    msg = problems(fc_model(scale=None))
    assert "missing quantization parameters" in msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -0.5])
def test_bad_scales(bad: float) -> None:
    msg = problems(fc_model(w_scale=bad))
    assert "scale" in msg
    assert (repr(bad) in msg) or (math.isnan(bad) and "nan" in msg)


def test_several_problems_in_one_line() -> None:
    msg = problems(fc_model(batch=3, scale=None, extra_op="ADD"))
    for part in ("unsupported op ADD", "batch 3", "missing quantization parameters"):
        assert part in msg
    assert msg.count(";") >= 2


def test_softmax_and_logistic_output_quantization_checked() -> None:
    msg = problems(single_op_model("LOGISTIC", 8, 0.05, 0, 1 / 256, 0))
    assert "TFLM requires -128" in msg
    opts = s.SoftmaxOptionsT()
    opts.beta = 1.0
    msg = problems(single_op_model("SOFTMAX", 8, 0.05, 0, 1 / 128, -128, opts, "SoftmaxOptions"))
    assert "1/256" in msg


def test_not_a_model() -> None:
    for junk in (b"", b"hello world, not a flatbuffer", bytes(range(256)) * 4):
        with pytest.raises(FirmwareExportError, match="not a TensorFlow Lite model"):
            read_model(junk)


def test_corrupt_or_truncated_model(int8_model: Any) -> None:
    data = int8_model().read_bytes()
    with pytest.raises(FirmwareExportError):
        build_plan(load_graph(data[: len(data) // 3]))


def test_two_subgraphs_rejected(int8_model: Any) -> None:
    m = edit_model(int8_model().read_bytes())
    m.subgraphs = [m.subgraphs[0], m.subgraphs[0]]
    with pytest.raises(FirmwareExportError, match="2 subgraphs"):
        read_model(pack(m))


def test_cli_writes_nothing_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "bad.tflite"
    model.write_bytes(fc_model(batch=2, extra_op="ADD"))
    out = tmp_path / "out"
    assert main(["export-c", str(model), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {model}: cannot export this model:")
    assert "ADD" in lines[0] and "batch 2" in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out*"))


def test_cli_keeps_previous_output_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    model = tmp_path / "float.tflite"
    model.write_bytes(b"junk")
    assert main(["export-c", str(model), "--out", str(out), "-q"]) == 1
    assert (out / "keep.txt").read_text() == "previous export"


def test_cli_missing_model_and_bad_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export-c", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "o")]) == 1
    assert "nope.tflite: no such file" in capsys.readouterr().err
    model = tmp_path / "m.tflite"
    model.write_bytes(fc_model())
    for prefix in ("1abc", "my__net", "net_", "int", "memory", "_x", "a-b"):
        assert (
            main(["export-c", str(model), "--out", str(tmp_path / "o"), "--prefix", prefix]) == 2
        ), prefix
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--prefix" in err
    assert not (tmp_path / "o").exists()


def test_exporter_never_imports_tensorflow(int8_model: Any, tmp_path: Path) -> None:
    """Import and run the exporter in a fresh interpreter; TensorFlow must stay unloaded."""
    script = f"""
import sys
from firmware_export.export import export_model, write_export
from lenet_edge import data
m = data.load()
r = export_model(open({str(int8_model())!r}, "rb").read(), n_vectors=3, images=m.x_test,
                 labels=m.y_test)
write_export(r, {str(tmp_path / "out")!r})
heavy = sorted(k for k in sys.modules if k.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("HEAVY", heavy)
sys.exit(1 if heavy else 0)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout
    assert (tmp_path / "out" / "export.json").is_file()
