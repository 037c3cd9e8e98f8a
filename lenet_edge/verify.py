"""Verification of a ``.tflite`` LeNet on the MNIST test set, on one or more host interpreters.

The building blocks are reusable (``bench`` and ``report`` call them):

- :func:`prepare_inputs` turns raw MNIST images into exactly what a model's input tensor wants
  (28×28 or 32×32; int8, uint8 or float32 with the model's own scale and zero point);
- :func:`interpreters.run_backend` returns the raw outputs of one backend;
- :func:`classification_metrics`, :func:`compare_to_reference` and :func:`compare_outputs`
  compute the figures from raw outputs;
- :func:`verify` runs the whole check and returns the report as a JSON-ready dict,
  :func:`format_report` renders it for a terminal.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.mnist import quantize_values as quantize_values_as_tflite
from lenet_edge import data
from lenet_edge.errors import GateError, LenetEdgeError, ModelFileError
from lenet_edge.interpreters import (
    BACKENDS,
    GOLDEN_BACKEND,
    RunResult,
    TensorInfo,
    TfliteModel,
    backend_unavailable_reason,
    check_keras_file,
    read_tflite,
    run_backend,
    sniff_model_file,
    tflm_min_arena,
)
from lenet_edge.progress import Progress

NUM_CLASSES = 10
#: Flattened input sizes of the two MNIST layouts and the image side they correspond to.
MNIST_SIDES = {28 * 28: 28, 32 * 32: 32}
MAX_LISTED = 20  # indices printed on the terminal (the JSON has them all)


# --------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------


def image_side(shape: Sequence[int]) -> int:
    """28 or 32: the MNIST image side a model input of ``shape`` (batch first) takes."""
    per_image = int(np.prod([int(d) for d in shape[1:]], dtype=np.int64)) if len(shape) > 1 else 0
    if per_image not in MNIST_SIDES:
        raise LenetEdgeError(
            f"model input shape {list(shape)} does not hold one 28x28 or 32x32 grayscale image"
        )
    return MNIST_SIDES[per_image]


def float_images(images: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Raw uint8 ``[N, 28, 28]`` images -> float32 in [0, 1], laid out as ``shape[1:]``.

    32×32 inputs get the one preprocessing of :func:`lenet_edge.data.preprocess` (zero-pad,
    scale); 28×28 inputs get the raw image scaled to [0, 1].
    """
    side = image_side(shape)
    x = data.preprocess(images, size=side)
    return x.reshape((len(x), *(int(d) for d in shape[1:])))


def quantize_values(x: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Quantize float ``x`` with the tensor's scale / zero point into its integer dtype, as
    TFLite's QUANTIZE op does (float32 ``x / scale``, rounded half away from zero, plus the
    zero point, saturated); float tensors get ``x`` unchanged."""
    dtype = tensor.np_dtype
    if np.issubdtype(dtype, np.floating):
        return np.asarray(x, dtype=dtype)
    if not tensor.quantized or tensor.scale <= 0:
        raise LenetEdgeError(
            f"input tensor {tensor.name!r} is {tensor.dtype} without a "
            "quantization scale; cannot feed it images"
        )
    return quantize_values_as_tflite(x, tensor.scale, tensor.zero_point, dtype)


def prepare_inputs(images: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Raw uint8 MNIST images -> the array the input ``tensor`` takes, one row per image.

    Equal to ``quantize_values(float_images(images, shape), tensor)``. For integer inputs it
    is computed through a 256-entry table: every value the one preprocessing produces is
    ``p / 255`` for a pixel ``p`` (the zero padding is ``p = 0``), so those 256 levels are
    quantized once and the pixels mapped through them, without 40 MB float temporaries.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    dtype = tensor.np_dtype
    if np.issubdtype(dtype, np.floating):
        return float_images(images, tensor.shape).astype(dtype, copy=False)
    side = image_side(tensor.shape)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise LenetEdgeError(
            f"expected uint8 [N, 28, 28] images, got {images.dtype} {images.shape}"
        )
    probe = np.zeros((1, 28, 28), dtype=np.uint8)
    probe.reshape(-1)[:256] = np.arange(256, dtype=np.uint8)
    levels = data.preprocess(probe, size=28).reshape(-1)[:256]
    table = quantize_values(levels, tensor)
    pad = (side - 28) // 2
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad))) if pad else images
    return table[padded].reshape((len(images), *(int(d) for d in tensor.shape[1:])))


def dequantize(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Integer outputs -> float32 with the tensor's scale / zero point (floats unchanged)."""
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.floating) or not tensor.quantized:
        return v.astype(np.float32)
    return (v.astype(np.float32) - np.float32(tensor.zero_point)) * np.float32(tensor.scale)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(x, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def looks_like_probabilities(p: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every row is in [0, 1] and sums to 1 (float outputs of a softmax)."""
    p = np.asarray(p, np.float64)
    return bool(
        np.all(p >= -tol)
        and np.all(p <= 1 + tol)
        and np.allclose(p.sum(axis=1), 1.0, atol=tol * p.shape[1])
    )


def output_lsb(model: TfliteModel) -> float | None:
    """The value of one LSB of the model output: 1 for integer outputs, the scale of the int8
    tensor behind a final DEQUANTIZE for float-I/O int8 models, None for float models."""
    out = model.output
    if out.dtype in ("int8", "uint8", "int16"):
        return 1.0
    op = model.producer(out.index)
    if op is not None and op.name == "DEQUANTIZE":
        src = model.tensors[op.inputs[0]]
        if src.quantized:
            return src.scale
    return None


def top1(values: np.ndarray) -> np.ndarray:
    """Predicted class per row (ties go to the lowest class index)."""
    return np.asarray(values).reshape(len(values), -1).argmax(axis=1)


def top1_ties(values: np.ndarray) -> int:
    """How many rows have more than one class at the maximum value."""
    v = np.asarray(values).reshape(len(values), -1)
    return int(((v == v.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def classification_metrics(
    pred: np.ndarray, labels: np.ndarray, num_classes: int = NUM_CLASSES
) -> dict[str, Any]:
    """Top-1 accuracy, per-class accuracy and the confusion matrix (rows: true class,
    columns: predicted class)."""
    pred = np.asarray(pred, np.int64)
    labels = np.asarray(labels, np.int64)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), support, out=np.zeros(num_classes), where=support > 0)
    correct = int(np.trace(confusion))
    return {
        "images": len(labels),
        "correct": correct,
        "accuracy": correct / len(labels) if len(labels) else 0.0,
        "per_class_accuracy": [round(float(a), 6) for a in per_class],
        "per_class_support": [int(s) for s in support],
        "confusion_matrix": confusion.tolist(),
        "misclassified_indices": [int(i) for i in np.flatnonzero(pred != labels)],
    }


def compare_to_reference(
    pred: np.ndarray,
    probs: np.ndarray,
    ref_pred: np.ndarray,
    ref_probs: np.ndarray,
    outputs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Top-1 agreement with the float reference, the images where they disagree, and the
    mean / max absolute difference of the (dequantized) probabilities.

    With the raw ``outputs``, also counts the disagreements that are ties: the float winner
    has the same (maximum) raw score as the predicted class, and lost only to the
    lowest-index tie-break. Those images sit on a decision boundary that the output
    resolution cannot separate.
    """
    pred = np.asarray(pred)
    ref_pred = np.asarray(ref_pred)
    diff = np.abs(np.asarray(probs, np.float64) - np.asarray(ref_probs, np.float64))
    disagree = np.flatnonzero(pred != ref_pred)
    tied = None
    if outputs is not None:
        v = np.asarray(outputs).reshape(len(outputs), -1)
        at_top = v[disagree, ref_pred[disagree]] == v[disagree].max(axis=1)
        tied = [int(i) for i in disagree[at_top]]
    return {
        "top1_agreement": 1.0 - len(disagree) / len(pred) if len(pred) else 0.0,
        "disagreements": len(disagree),
        "disagreement_indices": [int(i) for i in disagree],
        "disagreements_tied": None if tied is None else len(tied),
        "disagreement_tied_indices": tied,
        "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
        "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
    }


def compare_outputs(a: np.ndarray, b: np.ndarray, lsb: float | None) -> dict[str, Any]:
    """How two backends' raw outputs differ: images with non-identical outputs, the largest
    difference (in LSB when ``lsb`` is known, else as a float), a histogram of the per-image
    largest difference in LSB, and the images whose top-1 class differs."""
    a = np.asarray(a).reshape(len(a), -1)
    b = np.asarray(b).reshape(len(b), -1)
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        d = np.abs(a.astype(np.int64) - b.astype(np.int64)).astype(np.float64)
        unit = 1.0
    else:
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        unit = lsb if lsb else 0.0
    per_image = d.max(axis=1) if d.size else np.zeros(len(a))
    differ = np.flatnonzero(per_image > 0)
    top1_diff = np.flatnonzero(top1(a) != top1(b))
    out: dict[str, Any] = {
        "images_differ": len(differ),
        "differ_indices": [int(i) for i in differ],
        "top1_differ": len(top1_diff),
        "top1_differ_indices": [int(i) for i in top1_diff],
        "max_abs_diff": float(per_image.max()) if len(per_image) else 0.0,
    }
    if unit:
        lsb_per_image = np.rint(per_image / unit).astype(np.int64)
        out["max_lsb"] = int(lsb_per_image.max()) if len(lsb_per_image) else 0
        values, counts = np.unique(lsb_per_image[lsb_per_image > 0], return_counts=True)
        out["lsb_histogram"] = {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
    else:
        out["max_lsb"] = None
    return out


# --------------------------------------------------------------------------------------------
# Reference (float) model
# --------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """Float reference predictions over the same images."""

    source: str
    kind: str  # "keras" or "tflite:<kind>"
    probs: np.ndarray
    pred: np.ndarray
    softmax_applied: bool


def _as_probs(values: np.ndarray) -> tuple[np.ndarray, bool]:
    v = np.asarray(values, np.float64).reshape(len(values), -1)
    if looks_like_probabilities(v):
        return v, False
    return softmax(v), True


def keras_reference(
    path: str | Path,
    images: np.ndarray,
    expect: TfliteModel | None = None,
    model: Any = None,
) -> Reference:
    """Float predictions of the Keras model at ``path`` on raw MNIST ``images`` (``model``:
    that model when the caller has already loaded it)."""
    from lenet_edge.model import keras_input_shape, load_keras_model
    from lenet_edge.tfenv import quiet_stderr

    if model is None:
        model = load_keras_model(path)
    shape = keras_input_shape(model)
    if expect is not None:
        check_same_images(path, shape, expect)
    x = float_images(images, shape)
    with quiet_stderr():
        raw = np.asarray(model.predict(x, batch_size=1000, verbose=0))
    if raw.reshape(len(raw), -1).shape[1] != NUM_CLASSES:
        raise LenetEdgeError(
            f"{path}: the reference model has {raw.shape[1:]} outputs, "
            f"expected {NUM_CLASSES} classes"
        )
    probs, applied = _as_probs(raw)
    return Reference(str(path), "keras", probs, top1(raw), applied)


def tflite_reference(model: TfliteModel, images: np.ndarray) -> Reference:
    """Predictions of a (float) ``.tflite`` reference on raw MNIST ``images`` (LiteRT)."""
    res = run_backend("litert", model.data, prepare_inputs(images, model.input))
    probs, applied = model_probabilities(model, res.outputs)
    return Reference(model.source, f"tflite:{model.kind}", probs, top1(res.outputs), applied)


def model_probabilities(model: TfliteModel, outputs: np.ndarray) -> tuple[np.ndarray, bool]:
    """Dequantized class probabilities from raw outputs; softmax is applied (and True
    returned) when the model outputs logits rather than a SOFTMAX."""
    deq = dequantize(outputs, model.output).reshape(len(outputs), -1)
    if model.outputs_probabilities:
        return deq.astype(np.float64), False
    return softmax(deq), True


def check_same_images(reference: str | Path, ref_shape: Sequence[int], model: TfliteModel) -> None:
    """The float reference must take the images the model takes (28x28 vs 32x32): it is
    meant to be the model the ``.tflite`` was quantized from."""
    ref_side, side = image_side(ref_shape), image_side(model.input.shape)
    if ref_side != side:
        raise LenetEdgeError(
            f"--reference {reference} takes {ref_side}x{ref_side} images but {model.source} "
            f"takes {side}x{side}; give the float model that {model.source} was quantized from"
        )


def check_reference_file(path: str | Path, expect: TfliteModel | None = None) -> TfliteModel | Path:
    """Validate a ``--reference`` file without TensorFlow (one-line errors): a float
    ``.tflite`` is returned parsed, a ``.keras`` / ``.h5`` model as its checked path. When
    ``expect`` is given, the reference must take the same images."""
    p = Path(path)
    kind = sniff_model_file(p)
    if kind == "tflite":
        ref_model = read_tflite(p)
        if expect is not None:
            check_same_images(p, ref_model.input.shape, expect)
        return ref_model
    if kind in ("keras", "h5"):
        return check_keras_file(p)
    raise ModelFileError(
        f"{p}: not a model; --reference takes the .keras model (or a float .tflite)"
    )


def load_reference(
    checked: TfliteModel | Path, images: np.ndarray, expect: TfliteModel | None = None
) -> Reference:
    """Float predictions of a reference checked by :func:`check_reference_file`."""
    if isinstance(checked, Path):
        return keras_reference(checked, images, expect)
    return tflite_reference(checked, images)


# --------------------------------------------------------------------------------------------
# The whole verification
# --------------------------------------------------------------------------------------------


def resolve_backends(
    requested: Sequence[str], quiet: bool = True
) -> tuple[list[str], dict[str, str]]:
    """Backends to run (``all`` expands) and those skipped with the reason.

    ``tflite-runtime`` gets its cached environment made here when it is missing (progress on
    stderr unless ``quiet``). With ``all``, a ``tflite-runtime`` that cannot be set up is
    skipped with the reason; asked for by name, it fails with that reason.
    """
    names: list[str] = []
    skipped: dict[str, str] = {}
    for r in requested or ["litert"]:
        expand = list(BACKENDS) if r == "all" else [r]
        for name in expand:
            if name not in BACKENDS:
                raise LenetEdgeError(
                    f"unknown backend {name!r}; choose from {', '.join(BACKENDS)} or all"
                )
            if name in names or name in skipped:
                continue
            reason = backend_unavailable_reason(name, quiet=quiet)
            if reason is None:
                names.append(name)
            elif r == "all":
                skipped[name] = reason
            else:
                raise LenetEdgeError(reason)
    return names, skipped


def _pair_order(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair, the golden backend (TFLM) first in its pairs, its pairs listed first."""
    pairs = []
    for a, b in itertools.combinations(names, 2):
        if b == GOLDEN_BACKEND:
            a, b = b, a
        pairs.append((a, b))
    pairs.sort(key=lambda p: p[0] != GOLDEN_BACKEND)
    return pairs


def verify(
    model: TfliteModel,
    images: np.ndarray,
    labels: np.ndarray,
    backends: Sequence[str] = ("litert",),
    reference: Reference | None = None,
    skipped: dict[str, str] | None = None,
    quiet: bool = True,
    arena: bool = True,
    split: str = "test",
    subset: str | None = None,
) -> dict[str, Any]:
    """Run ``model`` on ``images`` with each backend and return every figure as a dict.

    ``images`` are raw uint8 MNIST images; ``quiet=False`` shows a progress bar on stderr.
    """
    if not backends:
        raise LenetEdgeError("no backend to run")
    out_size = int(np.prod(model.output.shape[1:], dtype=np.int64))
    if out_size != NUM_CLASSES:
        raise LenetEdgeError(
            f"{model.source}: output shape {list(model.output.shape)} is not "
            f"{NUM_CLASSES} class scores"
        )
    inputs = prepare_inputs(images, model.input)
    lsb = output_lsb(model)
    results: dict[str, RunResult] = {}
    per_backend: dict[str, Any] = {}
    for name in backends:
        bar = Progress(len(images), f"verify {name}", quiet=quiet, unit=" images")
        try:
            res = run_backend(name, model.data, inputs, bar.update, quiet=quiet)
        finally:
            bar.close()
        results[name] = res
        pred = top1(res.outputs)
        probs, softmax_applied = model_probabilities(model, res.outputs)
        entry: dict[str, Any] = classification_metrics(pred, labels)
        entry["top1_ties"] = top1_ties(res.outputs)
        entry["latency"] = res.latency_stats()
        entry["wall_seconds"] = round(res.wall_seconds, 3)
        entry["softmax_applied"] = softmax_applied
        if res.info:
            entry["worker"] = res.info
        if reference is not None:
            entry["vs_reference"] = compare_to_reference(
                pred, probs, reference.pred, reference.probs, res.outputs
            )
        per_backend[name] = entry

    pairs = []
    for a, b in _pair_order(list(results)):
        cmp = compare_outputs(results[a].outputs, results[b].outputs, lsb)
        pairs.append({"a": a, "b": b, "golden": GOLDEN_BACKEND in (a, b), **cmp})

    report: dict[str, Any] = {
        "model": {"path": model.source, **model.summary()},
        "kind": model.kind,
        "input_preparation": _input_note(model.input),
        "output": {"probabilities": model.outputs_probabilities, "lsb": lsb},
        "dataset": {"split": split, "images": len(images), "subset": subset},
        "backends": list(results),
        "skipped_backends": dict(skipped or {}),
        "results": per_backend,
        "pairwise": pairs,
        "golden_backend": GOLDEN_BACKEND,
    }
    if reference is not None:
        ref_metrics = classification_metrics(reference.pred, labels)
        report["reference"] = {
            "path": reference.source,
            "kind": reference.kind,
            "softmax_applied": reference.softmax_applied,
            **ref_metrics,
        }
    if arena:
        report["tflm_arena"] = tflm_min_arena(model.data)
    return report


def _input_note(t: TensorInfo) -> str:
    side = image_side(t.shape)
    how = ("zero-padded to 32x32, " if side == 32 else "") + "scaled to [0, 1]"
    if t.quantized and t.dtype != "float32":
        how += f", quantized to {t.dtype} with scale {t.scale:.8g} and zero point {t.zero_point}"
    return f"MNIST 28x28 uint8 {how}, fed as {list(t.shape)} {t.dtype}"


def check_min_accuracy(report: dict[str, Any], min_accuracy: float | None) -> None:
    """Raise :class:`GateError` when any backend's accuracy is below ``min_accuracy`` (in
    percent)."""
    if min_accuracy is None:
        return
    failing = [
        (name, 100 * r["accuracy"])
        for name, r in report["results"].items()
        if 100 * r["accuracy"] < min_accuracy
    ]
    if failing:
        detail = ", ".join(f"{acc:.2f}% on {name}" for name, acc in failing)
        raise GateError(f"accuracy {detail} is below --min-accuracy {min_accuracy:.2f}%")


# --------------------------------------------------------------------------------------------
# Terminal rendering
# --------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _indices(idx: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in idx[:MAX_LISTED])
    return shown + (f", … (+{len(idx) - MAX_LISTED} more)" if len(idx) > MAX_LISTED else "")


def format_report(report: dict[str, Any]) -> str:
    """A human-readable summary of :func:`verify`'s report."""
    m = report["model"]
    kind = report["kind"]
    label = {"int8": "int8", "float32": "float"}.get(kind, kind)
    lines = [
        f"model      {m['path']}  ({kind}, {m['size_bytes']:,} bytes, sha256 {m['sha256'][:16]})",
        f"ops        {', '.join(m['ops'])}",
        f"input      {report['input_preparation']}",
        f"images     {report['dataset']['images']:,} (MNIST {report['dataset']['split']} set"
        + (f", {report['dataset']['subset']})" if report["dataset"].get("subset") else ")"),
    ]
    for name, why in report["skipped_backends"].items():
        lines.append(f"skipped    {name}: {why}")
    ref = report.get("reference")
    lines.append("")
    lines.append(
        f"{'backend':<16}{label + ' acc':>10}{'agree':>9}{'mean|dp|':>10}"
        f"{'wall':>8}   latency/image mean / p50 / p99"
    )
    for name, r in report["results"].items():
        vs = r.get("vs_reference")
        agree = _pct(vs["top1_agreement"]) if vs else "-"
        dp = f"{vs['mean_abs_prob_diff']:.5f}" if vs else "-"
        lat = r["latency"]
        tag = f"{name} (golden)" if name == report["golden_backend"] else name
        lines.append(
            f"{tag:<16}{_pct(r['accuracy']):>10}{agree:>9}{dp:>10}"
            f"{r['wall_seconds']:>7.2f}s   {lat['mean_us']:.0f} / {lat['median_us']:.0f}"
            f" / {lat['p99_us']:.0f} µs (host)"
        )
    for name, r in report["results"].items():
        w = r.get("worker")
        if w:
            rss = w.get("worker_max_rss_kib")
            lines.append(
                f"{name:<16}worker: tflite_runtime {w.get('tflite_runtime')}, NumPy "
                f"{w.get('numpy')}, Python {w.get('python_version')}; "
                + ("environment made now in " if w.get("environment_created") else "set-up ")
                + f"{w.get('setup_seconds', 0):.1f} s, worker start "
                f"{w.get('worker_start_seconds', 0):.2f} s"
                + (f", max RSS {rss / 1024:.0f} MiB" if rss else "")
            )
    if ref:
        lines.append(
            f"{'reference':<16}{_pct(ref['accuracy']):>10}   float ({ref['kind']}, {ref['path']})"
        )
    main = (
        report["golden_backend"]
        if report["golden_backend"] in report["results"]
        else report["backends"][0]
    )
    r = report["results"][main]
    lines.append("")
    vs = r.get("vs_reference")
    if vs:
        delta = 100 * (r["accuracy"] - ref["accuracy"]) if ref else 0.0
        lines.append(
            f"float vs {label} ({main}): accuracy {delta:+.2f} pp, top-1 agreement "
            f"{_pct(vs['top1_agreement'])}, {vs['disagreements']} images differ"
            + (f": {_indices(vs['disagreement_indices'])}" if vs["disagreements"] else "")
        )
        lines.append(
            f"  dequantized probabilities: mean |diff| {vs['mean_abs_prob_diff']:.6f}, "
            f"max {vs['max_abs_prob_diff']:.4f}"
        )
    if r["top1_ties"]:
        tie_note = ""
        if vs and vs.get("disagreements_tied"):
            tie_note = (
                f"; {vs['disagreements_tied']} of the float/{label} disagreements are such "
                "ties, the float winner tied at the top"
            )
        lines.append(
            f"  {r['top1_ties']} images have a tied top-1 output (lowest class index wins, as "
            f"argmax on the MCU){tie_note}"
        )
    lines.append(
        f"per-class accuracy ({main}): "
        + "  ".join(f"{c}:{100 * a:.1f}" for c, a in enumerate(r["per_class_accuracy"]))
    )
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    lines.append("      " + "".join(f"{c:>6}" for c in range(NUM_CLASSES)))
    for c, row in enumerate(r["confusion_matrix"]):
        lines.append(f"  {c:>3} " + "".join(f"{v:>6}" for v in row))
    if report["pairwise"]:
        lines.append("")
        lines.append("pairwise output differences (TFLM is the golden reference for firmware)")
        for p in report["pairwise"]:
            size = (
                f"max {p['max_lsb']} LSB"
                if p["max_lsb"] is not None
                else f"max |diff| {p['max_abs_diff']:.3g}"
            )
            top = f", top-1 differs on {p['top1_differ']}" if p["top1_differ"] else ""
            lines.append(
                f"  {p['a']:>14} vs {p['b']:<14} {p['images_differ']:>5} images differ, {size}{top}"
            )
    arena = report.get("tflm_arena")
    if arena:
        lines.append("")
        if arena.get("bytes"):
            lines.append(
                f"TFLM arena: {arena['bytes']:,} bytes minimum on {arena['host']} "
                "(host figure; a 32-bit Cortex-M build needs somewhat less)"
            )
        else:
            lines.append(f"TFLM arena: not measured ({arena.get('error')})")
    return "\n".join(lines)
