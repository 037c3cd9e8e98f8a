"""``lenet-edge verify``: independent accuracy, gate, backends side by side, inputs, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lenet_edge.cli import main
from lenet_edge.errors import LenetEdgeError
from lenet_edge.interpreters import TensorInfo, read_tflite
from lenet_edge.verify import (
    classification_metrics,
    compare_outputs,
    compare_to_reference,
    prepare_inputs,
    quantize_values,
)

# The sigmoid ``seed`` LeNet barely moves in one short epoch; the ReLU ``modern`` variant
# reaches ~87 % after one epoch on 6,000 images, enough to compare float, int8 and backends
# meaningfully (and ReLU is where TFLM and the reference kernels round differently).
MODERN = {"variant": "modern"}


def _verify(args: list[str], tmp_path: Path, name: str = "v.json") -> tuple[int, dict]:
    out = tmp_path / name
    rc = main(["verify", *args, "--json", str(out), "-q"])
    return rc, (json.loads(out.read_text()) if out.exists() else {})


def _only_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_verify_agrees_with_independent_accuracy(int8_model, mnist, test_inputs_int8, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = int8_model(**MODERN)
    rc, rep = _verify([str(path), "--no-arena"], tmp_path)
    assert rc == 0
    # independent: the plain LiteRT API on test vectors quantized by the conftest helper
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    x = test_inputs_int8(scale, zp)
    pred = np.empty(len(x), np.int64)
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i : i + 1])
        it.invoke()
        pred[i] = int(np.argmax(it.get_tensor(out["index"])[0]))
    y = mnist.y_test
    r = rep["results"]["litert"]
    assert rep["dataset"]["images"] == 10000 and r["images"] == 10000
    assert r["correct"] == int((pred == y).sum())
    assert r["accuracy"] == pytest.approx(float((pred == y).mean()))
    assert r["misclassified_indices"] == np.flatnonzero(pred != y).tolist()
    conf = np.array(r["confusion_matrix"])
    assert conf.sum(axis=1).tolist() == np.bincount(y, minlength=10).tolist()
    for c in range(10):
        assert r["per_class_accuracy"][c] == pytest.approx(float((pred[y == c] == c).mean()),
                                                           abs=1e-6)  # fmt: skip
    assert r["accuracy"] > 0.8  # the short modern run does learn MNIST
    lat = r["latency"]
    assert 0 < lat["min_us"] <= lat["median_us"] <= lat["max_us"]


def test_reference_agreement_and_min_accuracy_gate(int8_model, trained_model, tmp_path, capsys):
    path = int8_model(**MODERN)
    keras_path = trained_model(**MODERN) / "model.keras"
    base = [str(path), "--reference", str(keras_path), "--limit", "2000", "--no-arena"]
    rc, rep = _verify(base, tmp_path)
    assert rc == 0
    acc = 100 * rep["results"]["litert"]["accuracy"]
    ref = rep["reference"]
    assert ref["kind"] == "keras" and ref["images"] == 2000
    vs = rep["results"]["litert"]["vs_reference"]
    assert vs["top1_agreement"] > 0.98
    assert vs["disagreements"] == len(vs["disagreement_indices"])
    assert 0 < vs["mean_abs_prob_diff"] < 0.02
    # the probability differences are computed on dequantized int8 outputs: not all zero
    assert vs["max_abs_prob_diff"] > 0
    capsys.readouterr()

    rc_hi, rep_hi = _verify([*base, "--min-accuracy", f"{acc + 0.5:.2f}"], tmp_path, "hi.json")
    assert rc_hi == 1
    assert "below --min-accuracy" in capsys.readouterr().err
    assert rep_hi["gate"]["passed"] is False  # the JSON is written before the gate fails
    rc_lo, rep_lo = _verify([*base, "--min-accuracy", f"{acc - 0.5:.2f}%"], tmp_path, "lo.json")
    assert rc_lo == 0 and rep_lo["gate"]["passed"] is True
    # fractions are refused rather than silently passing every model
    assert main(["verify", str(path), "--min-accuracy", "0.99"]) == 2
    assert "looks like a fraction" in capsys.readouterr().err


def test_backend_all_pairwise_differences(int8_model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from firmware_export.tflm import TflmModel

    path = int8_model(**MODERN)
    n = 300
    rc, rep = _verify([str(path), "--backend", "all", "--limit", str(n)], tmp_path)
    assert rc == 0
    ran = rep["backends"]
    assert {"litert", "litert-ref", "tflm"} <= set(ran)
    if "tflite-runtime" not in ran:
        assert "NumPy < 2" in rep["skipped_backends"]["tflite-runtime"]
    pairs = {(p["a"], p["b"]): p for p in rep["pairwise"]}
    assert len(pairs) == len(ran) * (len(ran) - 1) // 2
    golden = pairs[("tflm", "litert-ref")]  # TFLM is compared with the reference kernels
    assert golden["golden"] is True

    # independent recomputation of that pair with the plain APIs
    model = read_tflite(path)
    from lenet_edge import data

    x = prepare_inputs(data.load().x_test[:n], model.input)
    ref = Interpreter(model_path=str(path),
                      experimental_op_resolver_type=OpResolverType.BUILTIN_REF)  # fmt: skip
    ref.allocate_tensors()
    i_in, i_out = ref.get_input_details()[0]["index"], ref.get_output_details()[0]["index"]
    tflm = TflmModel(path.read_bytes())
    ref_out, tflm_out = [], []
    for k in range(n):
        ref.set_tensor(i_in, x[k : k + 1])
        ref.invoke()
        ref_out.append(ref.get_tensor(i_out)[0].astype(int))
        tflm_out.append(tflm.invoke(x[k : k + 1])[0].astype(int))
    diff = np.abs(np.array(ref_out) - np.array(tflm_out)).max(axis=1)
    assert golden["images_differ"] == int((diff > 0).sum())
    assert golden["max_lsb"] == int(diff.max())
    for name in ran:
        assert rep["results"][name]["images"] == n
    arena = rep["tflm_arena"]
    assert arena["host"] and 1000 < arena["bytes"] < 1 << 20


def test_tflite_runtime_absence_is_explained(int8_model, capsys, tmp_path, monkeypatch):
    """tflite-runtime cannot be set up (no environment yet, no reachable package index):
    asked for by name, one line says why and what to do."""
    for k in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(k)
    monkeypatch.delenv("LENET_EDGE_TFLITE_RUNTIME_PYTHON", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    rc = main(["verify", str(int8_model(**MODERN)), "--backend", "tflite-runtime", "-q"])
    assert rc == 1
    line = _only_line(capsys.readouterr().err)
    assert "tflite-runtime" in line and "NumPy < 2" in line


def test_io_variants_give_identical_predictions(int8_model, tmp_path):
    """uint8 and float32 I/O wrap the same int8 graph: the prepared inputs must be exact."""
    reps = {}
    for io in ("int8", "uint8", "float32"):
        rc, reps[io] = _verify([str(int8_model(io=io, **MODERN)), "--limit", "1000", "--no-arena"],
                               tmp_path, f"{io}.json")  # fmt: skip
        assert rc == 0
    base = reps["int8"]["results"]["litert"]
    for io in ("uint8", "float32"):
        r = reps[io]["results"]["litert"]
        assert reps[io]["kind"] == "int8"
        assert r["misclassified_indices"] == base["misclassified_indices"]
        assert r["confusion_matrix"] == base["confusion_matrix"]


def test_foreign_28x28_float_and_uint8_models(trained_model, tmp_path):
    """A LeNet converted another way (from_keras_model: 28x28 input, dynamic batch, float or
    uint8 I/O) verifies like our own."""
    from lenet_edge.model import load_keras_model
    from lenet_edge.tfenv import quiet_stderr, tf

    t = tf()
    import keras

    src = load_keras_model(str(trained_model(**MODERN) / "model.keras"))
    inp = keras.Input((28, 28, 1))
    x = keras.layers.ZeroPadding2D(2)(inp)
    for layer in src.layers[1:]:
        x = layer(x)
    m28 = keras.Model(inp, x)
    keras_path = tmp_path / "m28.keras"
    m28.save(keras_path)
    from lenet_edge import data

    calib = data.preprocess(data.load().x_train[:50], size=28)
    with quiet_stderr():
        flat = t.lite.TFLiteConverter.from_keras_model(m28).convert()
        conv = t.lite.TFLiteConverter.from_keras_model(m28)
        conv.optimizations = [t.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
        conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = t.uint8
        q = conv.convert()
    (tmp_path / "f.tflite").write_bytes(flat)
    (tmp_path / "q.tflite").write_bytes(q)

    limit = ["--limit", "1000", "--no-arena", "--reference", str(keras_path)]
    rc, rep = _verify([str(tmp_path / "f.tflite"), *limit], tmp_path, "f.json")
    assert rc == 0
    assert rep["kind"] == "float32" and rep["model"]["input"]["shape"] == [1, 28, 28, 1]
    assert "SHAPE" in rep["model"]["ops"]  # the dynamic-batch chain of this route
    r = rep["results"]["litert"]
    assert r["accuracy"] == pytest.approx(rep["reference"]["accuracy"], abs=0.002)
    assert r["vs_reference"]["top1_agreement"] >= 0.998
    assert r["vs_reference"]["mean_abs_prob_diff"] < 1e-5

    rc, rep = _verify([str(tmp_path / "q.tflite"), *limit], tmp_path, "q.json")
    assert rc == 0
    assert rep["kind"] == "int8" and rep["model"]["input"]["dtype"] == "uint8"
    assert rep["results"]["litert"]["vs_reference"]["top1_agreement"] > 0.98


def test_bad_files_give_one_line_errors(int8_model, trained_model, tmp_path, capfd):
    good = int8_model(**MODERN).read_bytes()
    truncated = tmp_path / "trunc.tflite"
    truncated.write_bytes(good[: len(good) // 2])
    cut_tail = tmp_path / "tail.tflite"
    cut_tail.write_bytes(good[:-1])
    text = tmp_path / "notes.tflite"
    text.write_text("hello\n")
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    keras_path = trained_model(**MODERN) / "model.keras"
    json_out = tmp_path / "out" / "v.json"
    cases = [
        ([str(tmp_path / "missing.tflite")], "no such file"),
        ([str(truncated)], "truncated or corrupted"),
        ([str(cut_tail)], "truncated or corrupted"),
        ([str(text)], "not a .tflite model"),
        ([str(empty)], "empty file"),
        ([str(keras_path)], "is a Keras model (.keras zip), not a .tflite"),
        ([str(int8_model(**MODERN)), "--reference", str(tmp_path / "nope.keras")], "no such file"),
        ([str(int8_model(**MODERN)), "--reference", str(text)], "--reference takes the .keras"),
    ]
    for args, expected in cases:
        rc = main(["verify", *args, "--json", str(json_out)])
        assert rc == 1, args
        assert expected in _only_line(capfd.readouterr().err), args
    assert not json_out.parent.exists()


def test_input_preparation_matches_the_one_preprocessing(mnist):
    from lenet_edge.verify import float_images

    images = mnist.x_test[:50]
    for shape in ((1, 32, 32, 1), (1, 28, 28, 1), (1, 784)):
        for dtype, scale, zp in (("int8", 1 / 255, -128), ("uint8", 1 / 255, 0),
                                 ("int8", 0.0071, -3)):  # fmt: skip
            t = TensorInfo(0, "in", shape, dtype, (scale,), (zp,))
            expected = quantize_values(float_images(images, shape), t)
            assert np.array_equal(prepare_inputs(images, t), expected), (shape, dtype, scale)
        f = TensorInfo(0, "in", shape, "float32")
        assert np.array_equal(prepare_inputs(images, f), float_images(images, shape))


def test_input_preparation_rounds_like_tflite():
    t8 = TensorInfo(0, "in", (1, 28, 28, 1), "int8", (1 / 255,), (-128,))
    raw = np.arange(256, dtype=np.uint8).repeat(4)[: 28 * 28].reshape(1, 28, 28)
    x = prepare_inputs(raw, t8)
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.int8
    assert np.array_equal(x[0, ..., 0].astype(int), raw[0].astype(int) - 128)
    tu = TensorInfo(0, "in", (1, 32, 32, 1), "uint8", (1 / 255,), (0,))
    xu = prepare_inputs(raw, tu)
    assert np.array_equal(xu[0, 2:30, 2:30, 0], raw[0]) and xu[0, :2].max() == 0
    half = TensorInfo(0, "in", (1, 4), "int8", (1.0,), (0,))
    vals = quantize_values(np.array([[0.5, -0.5, 1.5, 200.0]]), half)
    assert vals.tolist() == [[1, -1, 2, 127]]  # half away from zero, then saturate
    with pytest.raises(LenetEdgeError, match="28x28 or 32x32"):
        prepare_inputs(raw, TensorInfo(0, "in", (1, 30, 30, 1), "float32"))


def test_metric_helpers_on_a_small_example():
    m = classification_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), num_classes=3)
    assert m["correct"] == 3 and m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert m["per_class_accuracy"] == [1.0, 1.0, 0.5]
    assert m["misclassified_indices"] == [2]
    a = np.array([[0, 5, -3], [1, 1, 1]], np.int8)
    b = np.array([[0, 5, -3], [1, 4, -1]], np.int8)
    c = compare_outputs(a, b, 1.0)
    assert c["images_differ"] == 1 and c["max_lsb"] == 3 and c["differ_indices"] == [1]
    assert c["lsb_histogram"] == {"3": 1} and c["top1_differ"] == 1
    outs = np.array([[10, 10, 0], [0, 3, 9]])
    r = compare_to_reference(np.array([0, 2]), np.zeros((2, 3)), np.array([1, 2]),
                             np.full((2, 3), 0.5), outs)  # fmt: skip
    assert r["disagreements"] == 1 and r["disagreements_tied"] == 1
    assert r["top1_agreement"] == 0.5 and r["mean_abs_prob_diff"] == 0.5


def test_model_through_a_pipe_is_read(int8_model, tmp_path):
    """`verify /dev/stdin < model.tflite` and `cat model.tflite | verify /dev/stdin`: a model
    given through a pipe is read (once), not called "not a .tflite"."""
    import subprocess
    import sys

    model = int8_model()
    argv = [sys.executable, "-m", "lenet_edge", "verify", "/dev/stdin", "--limit", "20"]
    argv += ["--no-arena", "-q", "--json", "-"]
    with open(model, "rb") as f:
        redirected = subprocess.run(argv, stdin=f, capture_output=True, text=True, check=False)
    piped = subprocess.run(argv, input=model.read_bytes(), capture_output=True, check=False)
    for proc, out in ((redirected, redirected.stdout), (piped, piped.stdout.decode())):
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(out)  # `--json -`: the JSON alone on stdout
        assert doc["dataset"]["images"] == 20


def test_sigterm_leaves_no_temporary_and_exits_143(int8_model, tmp_path):
    """SIGTERM (timeout, docker stop, CI cancel) takes the interrupt path: exit 143, the one
    `error: interrupted` line, no output and no temporary left."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "v.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_edge", "verify", str(int8_model()), "--backend", "all",
         "--json", str(out), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("verify finished before the signal")
    assert proc.returncode == 143, err
    assert err.splitlines() == [
        "error: interrupted; outputs written so far are complete, nothing partial was left"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_quiet_verify_prints_nothing_on_stderr(int8_model, tmp_path, capfd):
    rc = main(["verify", str(int8_model()), "--limit", "20", "--no-arena", "-q"])
    assert rc == 0
    captured = capfd.readouterr()
    assert captured.err == ""
    assert "accuracy" in captured.out
