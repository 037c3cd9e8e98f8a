"""``lenet-edge quantize``: full int8, deterministic, masks survive, quant.json, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lenet_edge import data
from lenet_edge.cli import main
from lenet_edge.interpreters import OpInfo, TensorInfo, TfliteModel, read_tflite
from lenet_edge.model import c3_mask
from lenet_edge.quantize import calibration_images, int8_problems
from tests.support import ROOT

SEED_OPS = [
    "CONV_2D", "LOGISTIC", "AVERAGE_POOL_2D",
    "CONV_2D", "LOGISTIC", "AVERAGE_POOL_2D",
    "RESHAPE",
    "FULLY_CONNECTED", "LOGISTIC",
    "FULLY_CONNECTED", "LOGISTIC",
    "FULLY_CONNECTED", "SOFTMAX",
]  # fmt: skip


def _weighted(model: TfliteModel) -> list[tuple[OpInfo, TensorInfo, TensorInfo]]:
    t = model.tensors
    return [(op, t[op.inputs[1]], t[op.inputs[2]]) for op in model.ops
            if op.name in ("CONV_2D", "FULLY_CONNECTED")]  # fmt: skip


def test_small_model_is_full_int8(int8_model):
    m = read_tflite(int8_model())
    assert m.op_names == SEED_OPS  # batch 1: no SHAPE/STRIDED_SLICE/PACK chain
    assert m.kind == "int8"
    assert (m.input.dtype, m.output.dtype) == ("int8", "int8")
    assert m.input.shape == (1, 32, 32, 1) and m.output.shape == (1, 10)
    weighted = _weighted(m)
    assert len(weighted) == 5
    for _op, w, b in weighted:
        assert w.dtype == "int8" and w.constant
        assert b.dtype == "int32" and b.constant
        assert len(w.scales) == w.shape[0] > 1  # per-channel by default
        assert set(w.zero_points) == {0}  # symmetric weights
    for op in m.ops:
        for i in (*op.inputs, *op.outputs):
            tensor = m.tensors[i]
            if not tensor.constant:  # every activation is int8 and quantized
                assert tensor.dtype == "int8" and tensor.quantized, (op.name, tensor.name)
    assert not any(t.dtype.startswith("float") for t in m.tensors)
    assert int8_problems(m, "int8") == []


def test_per_tensor_and_c3_mask_survives(int8_model):
    mask = np.transpose(c3_mask(), (3, 0, 1, 2)) == 0  # TFLite filters are [out, kh, kw, in]
    assert mask.sum() == 16 * 6 * 25 - 60 * 25
    for per_channel in (True, False):
        m = read_tflite(int8_model(per_channel=per_channel))
        c1, c3 = (w for op, w, _b in _weighted(m) if op.name == "CONV_2D")
        kernel = m.constant(c3.index)
        assert kernel.dtype == np.int8 and kernel.shape == mask.shape
        assert np.count_nonzero(kernel[mask]) == 0  # masked connections are exact zeros
        assert np.count_nonzero(kernel[~mask]) > 0.9 * (~mask).sum()
        assert len(c3.scales) == (16 if per_channel else 1)
        assert len(c1.scales) == (6 if per_channel else 1)


@pytest.mark.parametrize(("io", "first", "last"), [
    ("uint8", "QUANTIZE", "QUANTIZE"),
    ("float32", "QUANTIZE", "DEQUANTIZE"),
])  # fmt: skip
def test_io_types_only_add_io_conversions(int8_model, io, first, last):
    m = read_tflite(int8_model(io=io))
    assert (m.input.dtype, m.output.dtype) == (io, io)
    assert m.op_names == [first, *SEED_OPS, last]
    assert m.kind == "int8"
    assert int8_problems(m, io) == []
    assert int8_problems(m, "int8")  # the I/O types are checked too


def _tensor(i: int, dtype: str, quantized: bool = True, constant: bool = False) -> TensorInfo:
    return TensorInfo(i, f"t{i}", (1, 4), dtype, (0.1,) if quantized else (), (0,) if quantized
                      else (), 0, constant)  # fmt: skip


def test_float_fallback_is_detected():
    # int8 in -> DEQUANTIZE -> float LOGISTIC -> QUANTIZE -> int8 out: a float op inside.
    tensors = (
        _tensor(0, "int8"), _tensor(1, "float32", quantized=False),
        _tensor(2, "float32", quantized=False), _tensor(3, "int8"),
    )  # fmt: skip
    ops = (
        OpInfo(0, "DEQUANTIZE", 1, (0,), (1,)),
        OpInfo(1, "LOGISTIC", 1, (1,), (2,)),
        OpInfo(2, "QUANTIZE", 1, (2,), (3,)),
    )
    m = TfliteModel(b"", "synthetic", ops, tensors, (0,), (3,), "")
    problems = int8_problems(m, "int8")
    assert any("DEQUANTIZE" in p and "float fallback" in p for p in problems)
    assert any("LOGISTIC" in p and "float32" in p for p in problems)
    assert any("QUANTIZE" in p and "float32 to int8" in p for p in problems)
    # custom ops and int32 activations (a dynamic-batch SHAPE chain) are refused as well
    shape_ops = (OpInfo(0, "SHAPE", 1, (0,), (1,)), OpInfo(1, "CUSTOM:Foo", 1, (1,), (2,)))
    shape_tensors = (_tensor(0, "int8"), _tensor(1, "int32", quantized=False), _tensor(2, "int8"))
    m2 = TfliteModel(b"", "synthetic", shape_ops, shape_tensors, (0,), (2,), "")
    problems2 = int8_problems(m2, "int8")
    assert any("SHAPE" in p and "int32" in p for p in problems2)
    assert any("custom op" in p for p in problems2)


def test_calibration_images_come_from_the_training_split(mnist):
    a = calibration_images(mnist.x_train, 100, seed=0)
    b = calibration_images(mnist.x_train, 100, seed=0)
    c = calibration_images(mnist.x_train, 100, seed=1)
    assert a.shape == (100, 28, 28) and np.array_equal(a, b) and not np.array_equal(a, c)
    train_rows = {row.tobytes() for row in mnist.x_train}
    assert all(img.tobytes() in train_rows for img in a)
    assert len(calibration_images(mnist.x_train[:10], 50, seed=0)) == 10


def test_cli_quantize_is_byte_identical_and_writes_quant_json(trained_model, tmp_path, capsys):
    keras_path = trained_model() / "model.keras"
    out1, out2 = tmp_path / "a" / "m.tflite", tmp_path / "b" / "m.tflite"
    args = ["--calibration-samples", "64", "--seed", "3", "-q"]
    assert main(["quantize", str(keras_path), "--out", str(out1), *args]) == 0
    stdout = capsys.readouterr().out
    assert "c3 mask: 900 masked weights, all exactly 0" in stdout
    # second run in a fresh process: catches process-dependent naming or ordering
    proc = subprocess.run(
        [sys.executable, "-m", "lenet_edge", "quantize", str(keras_path), "--out", str(out2),
         *args], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out1.read_bytes() == out2.read_bytes()

    record = json.loads((out1.parent / "m.quant.json").read_text())
    model = read_tflite(out1)
    assert record["ops"] == SEED_OPS
    assert record["output"]["sha256"] == model.sha256
    assert record["output"]["size_bytes"] == out1.stat().st_size
    assert record["quantization"]["calibration_samples"] == 64
    assert record["quantization"]["calibration_seed"] == 3
    assert record["command"].startswith("lenet-edge quantize ")
    assert "--calibration-samples 64 --seed 3 --io int8" in record["command"]
    assert record["masked_kernels"][0]["nonzero_masked_weights"] == 0
    assert len(record["tensors"]) == len(model.tensors)
    for entry, tensor in zip(record["tensors"], model.tensors, strict=True):
        assert entry["name"] == tensor.name and tuple(entry["shape"]) == tensor.shape
        assert entry["dtype"] == tensor.dtype
        assert entry["scales"] == list(tensor.scales)
        assert entry["zero_points"] == list(tensor.zero_points)
    assert record["input_tensor"]["scales"] == [pytest.approx(1 / 255)]
    # the record is reproducible too: no timestamps, the same content apart from paths
    other = json.loads((out2.parent / "m.quant.json").read_text())
    for key in ("output", "command"):
        record.pop(key), other.pop(key)
    assert record == other


def _only_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_cli_quantize_bad_inputs_one_line_errors(int8_model, tmp_path, capfd):
    keras_dir = tmp_path / "src"
    keras_dir.mkdir()
    truncated = keras_dir / "trunc.keras"
    truncated.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    text = keras_dir / "notes.keras"
    text.write_text("not a model\n")
    out_dir = tmp_path / "out"
    cases = {
        str(keras_dir / "missing.keras"): "no such file",
        str(truncated): "truncated or corrupted .keras",
        str(text): "not a Keras model",
        str(int8_model()): "is a .tflite flatbuffer, not a Keras model",
    }
    for src, expected in cases.items():
        rc = main(["quantize", src, "--out", str(out_dir / "m.tflite")])
        assert rc == 1
        assert expected in _only_line(capfd.readouterr().err)
    assert not out_dir.exists()  # nothing written, not even the directory


def test_data_preprocessing_is_shared():
    # calibration goes through the one preprocessing (zero-pad to 32, scale to [0, 1])
    from lenet_edge.verify import float_images

    img = np.full((1, 28, 28), 255, np.uint8)
    x = float_images(img, (1, 32, 32, 1))
    assert np.array_equal(x, data.preprocess(img))
    assert float_images(img, (1, 28, 28, 1)).max() == 1.0


def test_calibration_sweep_script_measures_on_the_validation_split(trained_model, tmp_path):
    """scripts/calibration_sweep.py (the measurement behind --calibration-samples' default)
    writes one row per count and seed, on validation images only."""
    model = trained_model() / "model.keras"
    out = tmp_path / "sweep.json"
    script = ROOT / "scripts" / "calibration_sweep.py"
    argv = [str(model), "--counts", "10,30", "--seeds", "0", "--val-limit", "300"]
    proc = subprocess.run(
        [sys.executable, str(script), *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["validation_images"] == 300 and doc["per_channel"] is True
    assert [(r["calibration_samples"], r["seed"]) for r in doc["rows"]] == [(10, 0), (30, 0)]
    for row in doc["rows"]:
        assert 0.5 < row["val_accuracy"] <= 1.0 and 0.9 < row["agreement"] <= 1.0
        assert 0.0 <= row["mean_abs_prob_diff"] < 0.05
    assert [m["calibration_samples"] for m in doc["means"]] == [10, 30]
    assert "    10" in proc.stdout and "    30" in proc.stdout


def test_nan_weights_are_named_not_a_float_fallback(trained_model, tmp_path, capsys):
    from lenet_edge.model import load_keras_model

    model = load_keras_model(trained_model() / "model.keras")
    weights = model.get_weights()
    weights[0] = np.full_like(weights[0], np.nan)
    model.set_weights(weights)
    model.save(tmp_path / "nan.keras")
    rc = main(["quantize", str(tmp_path / "nan.keras"), "--out", str(tmp_path / "q.tflite")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert "NaN or infinite weights" in err and "float" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.keras"]


def test_full_tmpdir_during_conversion_is_one_line(trained_model, tmp_path, monkeypatch, capsys):
    """TensorFlow's converter writes a SavedModel to TMPDIR; ENOSPC there is one line."""
    import errno
    import tempfile

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", full)
    out = tmp_path / "q.tflite"
    rc = main(["quantize", str(trained_model() / "model.keras"), "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert err.startswith("error: cannot use the temporary directory ")
    assert "No space left on device" in err and "TMPDIR" in err
    assert not out.exists() and not out.with_suffix(".quant.json").exists()


def test_quant_json_is_named_after_its_model():
    from lenet_edge.quantize import quant_json_path

    assert quant_json_path(Path("run/model_int8.tflite")) == Path("run/model_int8.quant.json")
    assert quant_json_path(Path("m")) == Path("m.quant.json")
