"""What the report measures itself: the per-layer quantization error (SQNR), the weight
bytes of each op, the verification of the int8 model on every host interpreter when no verify
JSON of the run matches (a silent ``lenet-edge verify --backend all``), and the predicted class
of the misclassified images shown.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenet_edge import __version__, tfenv
from lenet_edge.interpreters import TfliteModel
from lenet_edge.report.discover import Found, tflite_rel

MAX_GRID = 96  #: misclassified digits shown (8 rows)
_SKIPPED_LAYERS = ("InputLayer", "Flatten", "Reshape", "Dropout")

Say = Callable[[str], None]


def _name_scopes(tensor_name: str) -> set[str]:
    """The path components of a TFLite tensor name (``a/c1_1/Sigmoid;b`` -> ``a``, ``c1_1``,
    ``Sigmoid``, ``b``)."""
    return {part for piece in tensor_name.split(";") for part in piece.split("/") if part}


def in_scope(layer: str, tensor_name: str) -> bool:
    pattern = re.compile(rf"{re.escape(layer)}(_\d+)?(:\d+)?")
    return any(pattern.fullmatch(s) for s in _name_scopes(tensor_name))


def activation_map(keras_model: Any, model: TfliteModel) -> list[tuple[Any, int]]:
    """``(keras_layer, tensor_index)`` for each Keras layer whose output the int8 graph holds.

    A layer maps to the last tensor, in execution order, produced under its name scope (so
    ``c1`` maps to the LOGISTIC after its CONV_2D); the model output maps to the graph output
    (through a final DEQUANTIZE, to the int8 tensor before it). Shapes must agree.
    """
    out_index = model.output.index
    prod = model.producer(out_index)
    if model.output.dtype == "float32" and prod is not None and prod.name == "DEQUANTIZE":
        out_index = prod.inputs[0]
    produced = [t for op in model.ops for t in op.outputs]
    final = keras_model.outputs[0]
    pairs = []
    for layer in keras_model.layers:
        if type(layer).__name__ in _SKIPPED_LAYERS:
            continue
        size = int(np.prod([int(d) for d in layer.output.shape[1:]]))
        if layer.output is final or layer.output.name == final.name:
            index: int | None = out_index
        else:
            hits = [t for t in produced if in_scope(layer.name, model.tensors[t].name)]
            index = hits[-1] if hits else None
        if index is None:
            continue
        t = model.tensors[index]
        if int(np.prod(t.shape[1:], dtype=np.int64)) == size and t.quantized:
            pairs.append((layer, index))
    return pairs


def _sqnr_db(ref: np.ndarray, err: np.ndarray) -> float:
    signal = float(np.sum(np.square(ref, dtype=np.float64)))
    noise = float(np.sum(np.square(err, dtype=np.float64)))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _input_probe(model: TfliteModel) -> int:
    """The int8 tensor holding the quantized image: the input, or the output of the QUANTIZE
    that follows a float32 input."""
    if model.input.dtype != "float32":
        return model.input.index
    for op in model.ops:
        if op.name == "QUANTIZE" and model.input.index in op.inputs:
            return op.outputs[0]
    return model.input.index


def layer_sqnr(
    keras_model: Any,
    model: TfliteModel,
    images: np.ndarray,
    quiet: bool = True,
) -> list[dict[str, Any]]:
    """Per-layer SQNR (dB) of the int8 activations against the float activations.

    Each image runs through LiteRT's reference kernels with every intermediate tensor kept
    (``experimental_preserve_all_tensors``); the mapped int8 tensors are dequantized and
    compared with the outputs of the Keras layers for the same images. Also given: the
    SQNR of merely rounding the float activations to the tensor's own int8 grid (the floor
    that quantization alone imposes) and the mean absolute error in LSB. The first row is the
    quantized input image.
    """
    keras = tfenv.keras()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from firmware_export.sysutil import quiet_stderr
    from lenet_edge.model import keras_input_shape
    from lenet_edge.progress import Progress
    from lenet_edge.verify import dequantize, float_images, prepare_inputs, quantize_values

    pairs = activation_map(keras_model, model)
    x_float = float_images(images, keras_input_shape(keras_model))
    x_in = prepare_inputs(images, model.input)
    with quiet_stderr():
        probe = keras.Model(keras_model.inputs, [layer.output for layer, _ in pairs])
        # Keras' default batch size: float32 results depend on the batch size (by ~1e-6 here),
        # and this one is what a plain ``predict`` of the same layers gives.
        outputs = probe.predict(x_float, verbose=0)
    if not isinstance(outputs, list):
        outputs = [outputs]
    probes: list[tuple[str, str, int, np.ndarray]] = [
        ("input", "quantized image", _input_probe(model), x_float)
    ]
    for (layer, t), f in zip(pairs, outputs, strict=True):
        probes.append((layer.name, type(layer).__name__, t, np.asarray(f)))

    with quiet_stderr():
        it = Interpreter(
            model_content=model.data,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True,
        )
        it.allocate_tensors()
    tensors = [model.tensors[t] for _, _, t, _ in probes]
    quant = [np.empty((len(images), *t.shape[1:]), t.np_dtype) for t in tensors]
    bar = Progress(len(images), "report: per-layer SQNR", quiet=quiet, unit=" images")
    try:
        for i in range(len(images)):
            it.set_tensor(model.input.index, x_in[i : i + 1])
            it.invoke()
            for k, tensor in enumerate(tensors):
                quant[k][i] = it.get_tensor(tensor.index)[0]
            bar.update()
    finally:
        bar.close()

    rows = []
    for (name, kind, t, f), tensor, q in zip(probes, tensors, quant, strict=True):
        a = np.asarray(f, np.float64).reshape(len(images), -1)
        deq = dequantize(q, tensor).astype(np.float64).reshape(len(images), -1)
        rounded = dequantize(quantize_values(a.astype(np.float32), tensor), tensor)
        rows.append(
            {
                "layer": name,
                "kind": kind,
                "tensor": tensor.name,
                "ops": _layer_ops(model, name, t) if name != "input" else [],
                "shape": list(tensor.shape[1:]),
                "scale": tensor.scale,
                "zero_point": tensor.zero_point,
                "sqnr_db": _sqnr_db(a, a - deq),
                "rounding_floor_db": _sqnr_db(a, a - rounded.astype(np.float64)),
                "mean_abs_err_lsb": float(np.mean(np.abs(a - deq)) / tensor.scale),
            }
        )
    return rows


def _layer_ops(model: TfliteModel, layer: str, last_tensor: int) -> list[str]:
    """The ops, in order, whose outputs are in ``layer``'s name scope, up to the mapped one
    (which is included even when it is named otherwise, as the graph output is)."""
    ops = []
    for op in model.ops:
        hit = any(in_scope(layer, model.tensors[t].name) for t in op.outputs)
        if hit or last_tensor in op.outputs:
            ops.append(op.name)
        if last_tensor in op.outputs:
            break
    return ops


def weight_table(model: TfliteModel) -> list[dict[str, Any]]:
    """Bytes of the weights and biases of each weighted op of the flatbuffer."""
    from lenet_edge.interpreters import WEIGHTED_OPS

    rows = []
    for op in model.ops:
        if op.name not in WEIGHTED_OPS or len(op.inputs) < 2:
            continue
        w = model.tensors[op.inputs[1]]
        b = model.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        out = model.tensors[op.outputs[0]]
        scopes = sorted(_name_scopes(out.name))
        rows.append(
            {
                "op": op.name,
                "index": op.index,
                "output": out.name,
                "scopes": scopes,
                "weights_shape": list(w.shape),
                "weights_dtype": w.dtype,
                "weights_bytes": int(np.prod(w.shape, dtype=np.int64)) * w.np_dtype.itemsize,
                "per_channel_scales": len(w.scales),
                "bias_bytes": (
                    int(np.prod(b.shape, dtype=np.int64)) * b.np_dtype.itemsize if b else 0
                ),
            }
        )
    return rows


def matching_verify(
    found: Found, n_images: int, backends: Sequence[str]
) -> tuple[Path, dict[str, Any]] | None:
    """The verify JSON of this model over the first ``n_images`` test images that ran every
    one of ``backends`` (the best one when several do)."""
    best = None
    for path, doc in found.verify:
        ds = doc.get("dataset") or {}
        if ds.get("split") != "test" or ds.get("images") != n_images:
            continue
        if not isinstance(doc.get("results"), dict) or not set(backends) <= set(doc["results"]):
            continue
        score = (doc.get("golden_backend") in doc["results"], len(doc["results"]))
        if best is None or score > best[0]:
            best = (score, path, doc)
    return None if best is None else (best[1], best[2])


def run_verify(
    found: Found,
    images: np.ndarray,
    labels: np.ndarray,
    float_ref: Any,
    *,
    limited: bool,
    quiet: bool,
    json_out: Path | None,
    say: Say,
    names: list[str],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """``lenet-edge verify --backend all`` on ``images``, with the Keras reference; its
    ``command`` names ``json_out`` when the caller will save the result there."""
    from lenet_edge.train import package_versions
    from lenet_edge.verify import verify

    assert found.model is not None
    say(
        f"no verify JSON of this model with {', '.join(names)} on {len(images):,} test images: "
        "running them"
    )
    rep = verify(
        found.model,
        images,
        labels,
        names,
        reference=float_ref,
        skipped=skipped,
        quiet=quiet,
        arena=True,
        split="test",
        subset=f"first {len(images)} images only" if limited else None,
    )
    args = ["lenet-edge", "verify", tflite_rel(found), "--backend", "all"]
    if found.keras is not None:
        args += ["--reference", found.keras.as_posix()]
    if limited:
        args += ["--limit", str(len(images))]
    if json_out is not None:
        args += ["--json", json_out.as_posix()]
    rep["tool"] = f"lenet-edge {__version__} (report)"
    rep["command"] = shlex.join(args)
    rep["versions"] = package_versions()
    rep["gate"] = None
    return rep


@dataclass
class Misclassified:
    """The misclassified test images the page shows, with what the int8 model predicts."""

    total: int  #: misclassified according to the verify JSON
    indices: np.ndarray  #: shown, by test index
    true: list[int]
    pred: list[int]
    float_ok: list[bool]  #: the float model classifies it correctly
    stale: int  #: listed as misclassified but now classified correctly (not shown)


def misclassified(
    model: TfliteModel,
    verify_report: dict[str, Any],
    golden: str,
    images: np.ndarray,
    labels: np.ndarray,
    float_ref: Any,
    say: Say,
) -> Misclassified | None:
    """Re-run ``golden`` on the first :data:`MAX_GRID` misclassified images for their
    predicted class; ``None`` when none is misclassified."""
    from lenet_edge.interpreters import open_backend
    from lenet_edge.verify import prepare_inputs, top1

    wrong = verify_report["results"][golden]["misclassified_indices"]
    if not wrong:
        return None
    shown = np.asarray(wrong[:MAX_GRID], dtype=np.int64)
    say(f"predicted classes of {len(shown)} misclassified images ({golden})")
    out = open_backend(golden, model.data).run(prepare_inputs(images[shown], model.input))
    pred = top1(out.outputs)
    true = labels[shown]
    stale = int(np.sum(pred == true))
    keep = pred != true
    shown, pred, true = shown[keep], pred[keep], true[keep]
    float_ok = (
        [bool(float_ref.pred[i] == labels[i]) for i in shown]
        if float_ref is not None
        else [False] * len(shown)
    )
    return Misclassified(len(wrong), shown, true.tolist(), pred.tolist(), float_ok, stale)
