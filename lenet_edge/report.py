"""``lenet-edge report``: one self-contained HTML page about a run directory.

The page gathers what the other commands wrote into the run directory, matched by content
(SHA-256), not by file name:

- ``train.json`` (``train``): the training curves and the float accuracy;
- the int8 ``.tflite`` (``quantize``) and its quantization record;
- the JSON of ``verify --backend all --json``: the fidelity matrix of the host interpreters,
  the confusion matrix and per-class accuracy of the golden backend (TFLM). When no such
  file matches the model and the image count, the report runs that verification itself and
  saves it as ``RUN_DIR/verify.json`` for the next time;
- ``export.json`` (``export-c``) and the JSON of ``mcu-test --json``: the standalone engine's
  sizes and each board's flash, RAM, stack and instruction counts. When absent, the page says
  so and names the command that measures them.

It computes itself: the float predictions (Keras), the per-layer quantization error (SQNR of
each layer's int8 activations, read from LiteRT's intermediate tensors, against the Keras
layer outputs for the same images) and the predicted class of every misclassified image.

The page is deterministic: no timestamps, no timings, PNGs without metadata, so the same run
directory always gives the same bytes. Images are embedded as base64 PNGs; there are no
external resources and no scripts.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenet_edge import __version__, tfenv
from lenet_edge.errors import LenetEdgeError
from lenet_edge.fsutil import sha256_file
from lenet_edge.interpreters import TfliteModel, read_tflite, sniff_model_file

REPORT_NAME = "report.html"
VERIFY_NAME = "verify.json"
DEFAULT_SQNR_IMAGES = 500
MAX_GRID = 96  #: misclassified digits shown (8 rows)
GRID_COLUMNS = 12
MAX_JSON_BYTES = 20 << 20  #: larger JSON files in the run directory are not inspected
LECUN_ERROR = 0.0095  #: LeCun et al. 1998, LeNet-5 without distortions: 0.95 % test error
_SKIPPED_LAYERS = ("InputLayer", "Flatten", "Reshape", "Dropout")

Say = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# What is in the run directory
# --------------------------------------------------------------------------------------------


@dataclass
class Found:
    """The artifacts of a run directory, matched to its int8 model."""

    run_dir: Path
    keras: Path | None = None
    train: dict[str, Any] | None = None
    tflite: Path | None = None
    model: TfliteModel | None = None
    quant: tuple[Path, dict[str, Any]] | None = None
    verify: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    verify_used: tuple[Path, dict[str, Any]] | None = None  # the one the page shows
    exports: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    mcu: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def boards(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every board measured by mcu-test, one entry per board and build (C path, flags):
        when several files measured the same, the one that checked the most images."""
        best: dict[tuple[Any, ...], tuple[Path, dict[str, Any]]] = {}
        for path, doc in self.mcu:
            for b in doc.get("boards") or []:
                if not isinstance(b, dict):
                    continue
                key = (b.get("board"), b.get("dsp_path_enabled"), tuple(b.get("cflags") or ()))
                images = (b.get("check") or {}).get("images") or 0
                if key not in best or images > (
                    (best[key][1].get("check") or {}).get("images") or 0
                ):
                    best[key] = (path, b)
        return list(best.values())

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the run directory when inside it (stable across machines)."""
        p = Path(path)
        try:
            return p.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return str(p)


def _kind_of_json(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    if {"results", "pairwise", "golden_backend", "model"} <= doc.keys():
        return "verify"
    if {"scratch_size", "weight_bytes", "tflm_arena", "layers", "model"} <= doc.keys():
        return "export"
    if isinstance(doc.get("boards"), list) and "export_dir" in doc:
        return "mcu"
    if {"source_model", "quantization", "output"} <= doc.keys():
        return "quant"
    if {"history", "best_epoch"} <= doc.keys():
        return "train"
    return None


def _load_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _model_sha(doc: dict[str, Any], kind: str) -> str | None:
    if kind in ("verify", "export"):
        return (doc.get("model") or {}).get("sha256")
    if kind == "quant":
        return (doc.get("output") or {}).get("sha256")
    return None


def discover(run_dir: Path, tflite: Path | None = None) -> Found:
    """Find the run's Keras model, training record, int8 model and measurement files."""
    if not run_dir.exists():
        raise LenetEdgeError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise LenetEdgeError(f"{run_dir} is not a directory; give the run directory of `train`")
    found = Found(run_dir)

    keras = run_dir / "model.keras"
    if keras.is_file():
        found.keras = keras
    train_path = run_dir / "train.json"
    if train_path.is_file():
        doc = _load_json(train_path)
        if _kind_of_json(doc) == "train":
            found.train = doc
        else:
            found.notes.append(f"{found.rel(train_path)} is not a training record; ignored")

    docs: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted(run_dir.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(run_dir).parts):
            continue
        doc = _load_json(path)
        kind = _kind_of_json(doc)
        if kind is not None:
            docs.setdefault(kind, []).append((path, doc))

    found.tflite, found.model = _pick_tflite(found, tflite, docs.get("quant", []))
    if found.model is None:
        return found
    sha = found.model.sha256
    keras_sha = sha256_file(found.keras) if found.keras else None
    for kind in ("quant", "verify", "export"):
        for path, doc in docs.get(kind, []):
            if _model_sha(doc, kind) != sha:
                found.notes.append(
                    f"{found.rel(path)} ({kind}) was made from another model "
                    f"(SHA-256 {str(_model_sha(doc, kind))[:12]}), not "
                    f"{found.rel(found.model.source)}; ignored"
                )
            elif kind == "quant":
                found.quant = found.quant or (path, doc)
            elif kind == "verify":
                found.verify.append((path, doc))
            else:
                found.exports.append((path, doc))
    if found.quant and keras_sha:
        source = (found.quant[1].get("source_model") or {}).get("sha256")
        if source and source != keras_sha:
            found.notes.append(
                f"{found.rel(found.model.source)} was quantized from another model.keras "
                f"(SHA-256 {source[:12]}); float and int8 figures compare different models"
            )
    for path, doc in docs.get("mcu", []):
        export_dir = Path(str(doc.get("export_dir", "")))
        export_sha = None
        for cand in (export_dir, run_dir / export_dir.name):
            ej = _load_json(cand / "export.json") if export_dir.name else None
            if isinstance(ej, dict) and _kind_of_json(ej) == "export":
                export_sha = _model_sha(ej, "export")
                break
        if export_sha == sha:
            found.mcu.append((path, doc))
        elif export_sha is None:
            found.notes.append(
                f"{found.rel(path)} (mcu-test): its export directory {export_dir} is gone, so "
                "which model it measured is unknown; ignored"
            )
        else:
            found.notes.append(
                f"{found.rel(path)} (mcu-test) measured another model (SHA-256 "
                f"{export_sha[:12]}); ignored"
            )
    return found


def _pick_tflite(
    found: Found, explicit: Path | None, quants: list[tuple[Path, dict[str, Any]]]
) -> tuple[Path | None, TfliteModel | None]:
    if explicit is not None:
        model = read_tflite(explicit)
        if model.kind != "int8":
            raise LenetEdgeError(
                f"{explicit} is a {model.kind} model; the report needs the int8 .tflite "
                "from `lenet-edge quantize`"
            )
        return explicit, model
    by_sha: dict[str, tuple[Path, TfliteModel]] = {}
    for path in sorted(found.run_dir.rglob("*.tflite"), key=lambda p: (len(p.parts), str(p))):
        if any(part.startswith(".") for part in path.relative_to(found.run_dir).parts):
            continue
        try:
            model = read_tflite(path)
        except LenetEdgeError as exc:
            found.notes.append(f"{found.rel(path)}: {exc}; ignored")
            continue
        if model.kind != "int8":
            found.notes.append(f"{found.rel(path)} is a {model.kind} model, not int8; ignored")
            continue
        by_sha.setdefault(model.sha256, (path, model))
    if len(by_sha) > 1:
        keras_sha = sha256_file(found.keras) if found.keras else None
        from_this = {
            (q.get("output") or {}).get("sha256")
            for _, q in quants
            if (q.get("source_model") or {}).get("sha256") == keras_sha
        }
        mine = {s: v for s, v in by_sha.items() if s in from_this}
        if len(mine) == 1:
            by_sha = mine
        else:
            names = ", ".join(found.rel(p) for p, _ in by_sha.values())
            raise LenetEdgeError(
                f"{found.run_dir} holds several int8 models ({names}); choose one with --model"
            )
    if not by_sha:
        return None, None
    path, model = next(iter(by_sha.values()))
    return path, model


# --------------------------------------------------------------------------------------------
# Measurements the report makes itself
# --------------------------------------------------------------------------------------------


def _name_scopes(tensor_name: str) -> set[str]:
    """The path components of a TFLite tensor name (``a/c1_1/Sigmoid;b`` -> ``a``, ``c1_1``,
    ``Sigmoid``, ``b``)."""
    return {part for piece in tensor_name.split(";") for part in piece.split("/") if part}


def _in_scope(layer: str, tensor_name: str) -> bool:
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
            hits = [t for t in produced if _in_scope(layer.name, model.tensors[t].name)]
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
        outputs = probe.predict(x_float, batch_size=500, verbose=0)
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
        in_scope = any(_in_scope(layer, model.tensors[t].name) for t in op.outputs)
        if in_scope or last_tensor in op.outputs:
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


# --------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg, deterministic PNG without metadata)
# --------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": 100})
    return plt


def _png(fig: Any) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def plot_training(history: dict[str, list[float]], best_epoch: int | None) -> bytes:
    """Loss and accuracy per epoch, training and validation."""
    plt = _plt()
    epochs = list(range(1, len(history.get("loss", [])) + 1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if history.get(key):
            ax1.plot(epochs[: len(history[key])], history[key], marker=".", label=label)
    for key, label in (("accuracy", "train"), ("val_accuracy", "validation")):
        if history.get(key):
            ax2.plot(
                epochs[: len(history[key])],
                [100 * a for a in history[key]],
                marker=".",
                label=label,
            )
    from matplotlib.ticker import MaxNLocator

    for ax, ylabel in ((ax1, "loss"), (ax2, "accuracy (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch:
            ax.axvline(best_epoch, color="0.6", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_yscale("log")
    fig.tight_layout()
    return _png(fig)


def plot_confusion(confusion: list[list[int]], title: str) -> bytes:
    """Counts, rows true class, columns predicted; colour is log-scaled."""
    plt = _plt()
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    ax.imshow(np.log1p(cm), cmap="Blues")
    top = np.log1p(cm).max() or 1.0
    for (r, c), v in np.ndenumerate(cm):
        if v:
            colour = "white" if np.log1p(v) > 0.6 * top else ("black" if r == c else "#b00020")
            ax.text(c, r, str(v), ha="center", va="center", fontsize=7.5, color=colour)
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def plot_per_class(
    float_acc: Sequence[float] | None, int8_acc: Sequence[float], int8_label: str = "int8"
) -> bytes:
    """Per-class accuracy, float next to int8."""
    plt = _plt()
    classes = np.arange(len(int8_acc))
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.38
    values = [100 * np.asarray(int8_acc)]
    if float_acc is not None:
        ax.bar(classes - width / 2, 100 * np.asarray(float_acc), width, label="float (Keras)")
        values.append(100 * np.asarray(float_acc))
    ax.bar(classes + width / 2, 100 * np.asarray(int8_acc), width, label=int8_label)
    low = min(float(v.min()) for v in values)
    ax.set_ylim(max(0.0, math.floor(low - 1.0)), 100.0)
    ax.set_xticks(classes)
    ax.set_xlabel("class")
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return _png(fig)


def plot_misclassified(
    images: np.ndarray, true: Sequence[int], pred: Sequence[int], float_ok: Sequence[bool]
) -> bytes:
    """A grid of digits titled ``true→pred``; red titles where the float model was right."""
    plt = _plt()
    n = len(images)
    cols = min(GRID_COLUMNS, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.85, rows * 1.0), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(
                f"{true[k]}→{pred[k]}",
                fontsize=8,
                color="#b00020" if float_ok[k] else "black",
                pad=2,
            )
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.01, wspace=0.1, hspace=0.35)
    return _png(fig)


def plot_sqnr(rows: list[dict[str, Any]]) -> bytes:
    """SQNR per layer (bars) and the rounding floor (markers)."""
    plt = _plt()
    shown = [r for r in rows if r["layer"] != "input" and math.isfinite(r["sqnr_db"])]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    x = np.arange(len(shown))
    ax.bar(x, [r["sqnr_db"] for r in shown], color="#4c72b0", label="int8 vs float activations")
    floors = [r["rounding_floor_db"] for r in shown]
    ax.plot(
        x,
        [f if math.isfinite(f) else np.nan for f in floors],
        "o",
        color="#dd8452",
        label="rounding floor (float rounded to the int8 grid)",
    )
    ax.set_xticks(x, [r["layer"] for r in shown])
    ax.set_ylabel("SQNR (dB)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_memory(boards: list[dict[str, Any]]) -> bytes:
    """Flash and peak RAM per board, stacked by what uses them."""
    plt = _plt()
    labels = [_board_label(b) for b in boards]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 1.9 + 0.4 * len(boards)))
    y = np.arange(len(boards))

    def stack(ax: Any, parts: list[tuple[str, list[float]]], title: str) -> None:
        left = np.zeros(len(boards))
        for name, values in parts:
            v = np.asarray(values, dtype=np.float64) / 1024.0
            ax.barh(y, v, left=left, label=name)
            left += v
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel("KiB")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)

    fl = [b["memory"]["flash"] for b in boards]
    stack(
        ax1,
        [
            ("library (engine + weights)", [f.get("library", 0) for f in fl]),
            ("harness + runtime", [f.get("harness", 0) + f.get("runtime", 0) for f in fl]),
            ("test vectors", [f.get("test_vectors", 0) for f in fl]),
            ("fill", [f.get("fill", 0) for f in fl]),
        ],
        "flash",
    )
    pk = [b["memory"].get("peak_ram_breakdown", {}) for b in boards]
    stack(
        ax2,
        [
            ("scratch", [p.get("scratch", 0) for p in pk]),
            ("I/O buffers", [p.get("io_buffers", 0) for p in pk]),
            ("library data/bss", [p.get("library_data_bss", 0) for p in pk]),
            ("harness data/bss", [p.get("harness_data_bss", 0) for p in pk]),
            ("stack (measured)", [p.get("stack_high_water", 0) for p in pk]),
        ],
        "peak RAM",
    )
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px auto; max-width: 1100px;
       color: #1a1a1a; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; vertical-align: top; }
th { background: #f1f3f5; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ok { background: #e8f5e9; } td.bad { background: #fdecea; } td.diff { background: #fff8e1; }
figure { margin: 12px 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; display: block; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: 6px 10px; margin: 8px 0; }
.note { color: #555; font-size: 0.88em; }
code { background: #f4f4f4; padding: 0 3px; font-size: 0.92em; }
nav a { margin-right: 12px; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _img(png: bytes, alt: str, caption: str | None = None) -> str:
    w, h = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}" '
        f'width="{w}" height="{h}">{cap}</figure>'
    )


def _table(
    head: Sequence[str], rows: Iterable[Sequence[Any]], classes: Sequence[str] | None = None
) -> str:
    """An HTML table; cells are pre-rendered HTML (use :func:`_e` for text)."""
    out = ["<table><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for k, cell in enumerate(row):
            cls = classes[k] if classes and k < len(classes) and classes[k] else ""
            out.append(f'<td class="{cls}">{cell}</td>' if cls else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _missing(text: str, command: str | None = None) -> str:
    cmd = f": run <code>{_e(command)}</code>" if command else ""
    return f'<p class="missing">{text}{cmd}</p>'


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _int(x: Any) -> str:
    return f"{int(x):,}" if isinstance(x, int | np.integer) and not isinstance(x, bool) else "–"


def _kib(x: Any) -> str:
    return f"{int(x):,} B ({int(x) / 1024:.1f} KiB)" if isinstance(x, int) else "–"


def _db(x: float) -> str:
    if math.isinf(x):
        return "exact (∞)" if x > 0 else "−∞"
    return f"{x:.1f}"


def _board_label(b: dict[str, Any]) -> str:
    return str(b.get("board"))


def _c_path(b: dict[str, Any]) -> str:
    return "DSP" if b.get("dsp_path_enabled") else "portable"


# --------------------------------------------------------------------------------------------
# The whole report
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    """What to evaluate."""

    limit: int | None = None  # first N test images (None: all 10,000)
    sqnr_images: int = DEFAULT_SQNR_IMAGES
    data_dir: str | None = None
    quiet: bool = False


@dataclass
class Report:
    """The rendered page and the figures it shows (for the terminal summary and tests)."""

    html: str
    facts: dict[str, Any]
    verify_written: Path | None = None


def _say(quiet: bool) -> Say:
    def say(msg: str) -> None:
        if not quiet:
            print(f"report: {msg}", file=sys.stderr, flush=True)

    return say


def _matching_verify(
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


def build_report(found: Found, options: Options) -> Report:
    """Measure what is missing and render the HTML page."""
    from lenet_edge import data

    say = _say(options.quiet)
    mnist = data.load(options.data_dir)
    n = len(mnist.x_test) if options.limit is None else min(options.limit, len(mnist.x_test))
    images, labels = mnist.x_test[:n], mnist.y_test[:n]
    facts: dict[str, Any] = {"images": n, "run_dir": found.run_dir.name}

    keras_model = None
    float_ref = None
    if found.keras is not None:
        from lenet_edge.model import load_keras_model
        from lenet_edge.verify import keras_reference

        say(f"float predictions of {found.rel(found.keras)} on {n:,} test images")
        keras_model = load_keras_model(found.keras)
        float_ref = keras_reference(found.keras, images, model=keras_model)

    verify_report = None
    verify_path = None
    written = None
    if found.model is not None:
        from lenet_edge.verify import resolve_backends

        backends, skipped = resolve_backends(["all"])
        match = _matching_verify(found, n, backends)
        if match is not None:
            verify_path, verify_report = match
            say(f"reusing {found.rel(verify_path)} (verify, {n:,} images)")
        else:
            verify_report = _run_verify(
                found, images, labels, float_ref, options, say, backends, skipped
            )
            written = found.run_dir / VERIFY_NAME
            from lenet_edge.fsutil import atomic_write_json

            atomic_write_json(written, verify_report)
            verify_path = written
            say(f"verification saved to {written} (reused by the next report)")
        found.verify_used = (verify_path, verify_report)

    sections: list[tuple[str, str, str]] = []  # (id, title, body)
    sections.append(("training", "Training", _section_training(found)))
    golden = None
    misclassified_html = ""
    if verify_report is not None and found.model is not None:
        golden = (
            verify_report["golden_backend"]
            if verify_report["golden_backend"] in verify_report["results"]
            else next(iter(verify_report["results"]))
        )
        facts["int8_backend"] = golden
        facts["int8_accuracy"] = verify_report["results"][golden]["accuracy"]
    if float_ref is not None:
        from lenet_edge.verify import classification_metrics

        float_metrics = classification_metrics(float_ref.pred, labels)
        facts["float_accuracy"] = float_metrics["accuracy"]
    else:
        float_metrics = None
    sections.append(
        (
            "accuracy",
            "Accuracy: float and int8",
            _section_accuracy(found, verify_report, golden, float_metrics, n),
        )
    )
    if verify_report is not None and golden is not None and found.model is not None:
        misclassified_html = _section_misclassified(
            found.model, verify_report, golden, images, labels, float_ref, say
        )
    else:
        misclassified_html = _missing(
            "Misclassified digits not available: no int8 model in the run directory",
            _quantize_cmd(found),
        )
    sections.append(("misclassified", "Misclassified test digits (int8)", misclassified_html))

    if keras_model is not None and found.model is not None:
        k = min(options.sqnr_images, n)
        say(f"per-layer quantization error on {k} test images")
        rows = layer_sqnr(keras_model, found.model, images[:k], quiet=options.quiet)
        facts["sqnr_db"] = {r["layer"]: r["sqnr_db"] for r in rows}
        sqnr_html = _section_sqnr(rows, k)
    else:
        what = "the int8 model" if found.model is None else "model.keras"
        cmd = _quantize_cmd(found) if found.model is None else None
        sqnr_html = _missing(f"Per-layer quantization error not available: {what} is missing", cmd)
    sections.append(("sqnr", "Per-layer quantization error", sqnr_html))
    sections.append(
        ("size", "Size and memory", _section_size(found, keras_model, verify_report, facts))
    )
    sections.append(("fidelity", "Fidelity matrix", _section_fidelity(found, verify_report)))
    sections.append(("provenance", "Where the figures come from", _section_provenance(found)))
    if verify_path is not None:
        facts["verify_json"] = found.rel(verify_path)

    page = _page(found, facts, sections)
    return Report(page, facts, written)


def _quantize_cmd(found: Found) -> str:
    r = found.run_dir.as_posix()
    return f"lenet-edge quantize {r}/model.keras --out {r}/model_int8.tflite"


def _tflite_rel(found: Found) -> str:
    if found.tflite is None:
        return f"{found.run_dir.as_posix()}/model_int8.tflite"
    return (found.run_dir / found.rel(found.tflite)).as_posix()


def _run_verify(
    found: Found,
    images: np.ndarray,
    labels: np.ndarray,
    float_ref: Any,
    options: Options,
    say: Say,
    names: list[str],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """``lenet-edge verify --backend all`` on ``images``, with the Keras reference."""
    import shlex

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
        quiet=options.quiet,
        arena=True,
        split="test",
        subset=None if options.limit is None else f"first {len(images)} images only",
    )
    args = ["lenet-edge", "verify", _tflite_rel(found), "--backend", "all"]
    if found.keras is not None:
        args += ["--reference", found.keras.as_posix()]
    if options.limit is not None:
        args += ["--limit", str(len(images))]
    args += ["--json", (found.run_dir / VERIFY_NAME).as_posix()]
    rep["tool"] = f"lenet-edge {__version__} (report)"
    rep["command"] = shlex.join(args)
    rep["versions"] = package_versions()
    rep["gate"] = None
    return rep


def _section_training(found: Found) -> str:
    t = found.train
    if t is None:
        return _missing(
            "Training curves not available: no train.json in the run directory",
            f"lenet-edge train --out {found.run_dir.as_posix()}",
        )
    png = plot_training(t.get("history") or {}, t.get("best_epoch"))
    m = t.get("model") or {}
    tr = t.get("train") or {}
    variant = (
        f"{m.get('variant')} ({m.get('activation')}, {m.get('pooling')} pooling, {m.get('c3')} C3)"
    )
    augment = "on" if tr.get("augment") else "off"
    rows = [
        ("model", _e(variant)),
        ("parameters / MACs", f"{_int(t.get('parameters'))} / {_int(t.get('macs'))}"),
        ("training images", f"{_int(t.get('train_images'))} (augmentation {augment})"),
        ("epochs run / best epoch", f"{t.get('epochs_run')} / {t.get('best_epoch')}"),
        ("validation accuracy (best epoch)", _pct(t.get("val_accuracy"))),
        ("test accuracy (float, all 10,000)", _pct(t.get("test_accuracy"))),
    ]
    if t.get("interrupted"):
        rows.append(("note", "training was interrupted; the best epoch so far was kept"))
    caption = (
        "Loss (log scale) and accuracy per epoch; the model kept is the best epoch by "
        "validation accuracy."
    )
    return _img(png, "training curves", caption) + _table(["", ""], rows)


def _section_accuracy(
    found: Found,
    verify_report: dict[str, Any] | None,
    golden: str | None,
    float_metrics: dict[str, Any] | None,
    n: int,
) -> str:
    parts = []
    subset = "" if n == 10000 else f" <b>Only the first {n:,} test images</b> (--limit)."
    if verify_report is None or golden is None:
        parts.append(
            _missing(
                "int8 confusion matrix and per-class accuracy not available: no int8 model",
                _quantize_cmd(found),
            )
        )
        if float_metrics is not None:
            parts.append(f"<p>Float accuracy: {_pct(float_metrics['accuracy'])}.{subset}</p>")
        return "".join(parts)
    r = verify_report["results"][golden]
    parts.append(
        f"<p>int8 model evaluated with <b>{_e(golden)}</b>"
        + (
            " (the TFLM interpreter: the kernels the MCU runs, bit-exact with the firmware)"
            if golden == "tflm"
            else ""
        )
        + f" on {n:,} MNIST test images.{subset}</p>"
    )
    cm_png = plot_confusion(r["confusion_matrix"], f"int8 confusion matrix ({golden})")
    float_pc = float_metrics["per_class_accuracy"] if float_metrics else None
    pc_png = plot_per_class(float_pc, r["per_class_accuracy"], f"int8 ({golden})")
    parts.append('<div class="row">')
    parts.append(
        _img(
            cm_png,
            "int8 confusion matrix",
            "Rows: true class; columns: predicted class. Off-diagonal counts in red.",
        )
    )
    parts.append(_img(pc_png, "per-class accuracy", "Per-class accuracy, float next to int8."))
    parts.append("</div>")
    rows = []
    for c in range(len(r["per_class_accuracy"])):
        fa = float_pc[c] if float_pc else None
        ia = r["per_class_accuracy"][c]
        delta = "–" if fa is None else f"{100 * (ia - fa):+.2f}"
        rows.append([str(c), _int(r["per_class_support"][c]), _pct(fa), _pct(ia), delta])
    total_f = float_metrics["accuracy"] if float_metrics else None
    delta_total = "–" if total_f is None else f"{100 * (r['accuracy'] - total_f):+.2f}"
    rows.append(["<b>all</b>", _int(r["images"]), _pct(total_f), _pct(r["accuracy"]), delta_total])
    parts.append(
        _table(
            ["class", "images", "float (Keras)", f"int8 ({_e(golden)})", "Δ pp"],
            rows,
            ["", "n", "n", "n", "n"],
        )
    )
    lecun = (
        f"LeCun et al. (1998) report {100 * LECUN_ERROR:.2f}% test error for LeNet-5 without "
        f"distortions; this int8 model: {100 * (1 - r['accuracy']):.2f}%"
        + (f", float {100 * (1 - total_f):.2f}%" if total_f is not None else "")
        + "."
    )
    parts.append(f'<p class="note">{_e(lecun)}</p>')
    if float_metrics is None:
        parts.append(
            _missing("Float per-class accuracy not available: no model.keras in the run directory")
        )
    return "".join(parts)


def _section_misclassified(
    model: TfliteModel,
    verify_report: dict[str, Any],
    golden: str,
    images: np.ndarray,
    labels: np.ndarray,
    float_ref: Any,
    say: Say,
) -> str:
    from lenet_edge.interpreters import open_backend
    from lenet_edge.verify import prepare_inputs, top1

    wrong = verify_report["results"][golden]["misclassified_indices"]
    if not wrong:
        return "<p>No test image is misclassified by the int8 model.</p>"
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
    png = plot_misclassified(images[shown], true.tolist(), pred.tolist(), float_ok)
    quant_only = sum(float_ok)
    caption = (
        f"{'All' if len(shown) == len(wrong) else f'The first {len(shown)} of'} {len(wrong):,} "
        f"test images misclassified by the int8 model ({_e(golden)}), by test index; titles read "
        "true→predicted."
    )
    if float_ref is not None:
        caption += (
            f' <span style="color:#b00020">Red</span>: the float model classifies it correctly '
            f"({quant_only} of the {len(shown)} shown), so the error comes from quantization."
        )
    if stale:
        caption += (
            f" {stale} images the verify JSON lists as misclassified are now classified "
            f"correctly by {_e(golden)} (a JSON from another interpreter version?); not shown."
        )
    return _img(png, "misclassified test digits", caption)


def _section_sqnr(rows: list[dict[str, Any]], k: int) -> str:
    png = plot_sqnr(rows)
    table_rows = []
    for r in rows:
        gap = r["rounding_floor_db"] - r["sqnr_db"]
        table_rows.append(
            [
                f"<b>{_e(r['layer'])}</b>",
                _e(" + ".join(r["ops"]) or r["kind"]),
                _e("×".join(str(d) for d in r["shape"])),
                f"{r['scale']:.6g} / {r['zero_point']}",
                _db(r["sqnr_db"]),
                _db(r["rounding_floor_db"]),
                "–" if not math.isfinite(gap) else f"{gap:.1f}",
                f"{r['mean_abs_err_lsb']:.2f}",
            ]
        )
    intro = (
        f"<p>SQNR = 10·log<sub>10</sub>(Σ a² / Σ (a − â)²) over {k:,} test images, where a is "
        "the float activation (the Keras layer output) and â the int8 activation of the same "
        "layer in the quantized graph, dequantized (scale · (q − zero point)). The int8 values "
        "are read from LiteRT's intermediate tensors (reference kernels, all tensors "
        "preserved); the error accumulates from layer to layer. The rounding floor is the SQNR "
        "of merely rounding the float activations to the same int8 grid; the gap to it is the "
        "error inherited from earlier layers and from integer arithmetic.</p>"
    )
    table = _table(
        [
            "layer",
            "int8 ops",
            "shape",
            "scale / zero point",
            "SQNR (dB)",
            "rounding floor (dB)",
            "gap (dB)",
            "mean |error| (LSB)",
        ],
        table_rows,
        ["", "", "", "n", "n", "n", "n", "n"],
    )
    return intro + _img(png, "per-layer SQNR") + table


def _section_size(
    found: Found,
    keras_model: Any,
    verify_report: dict[str, Any] | None,
    facts: dict[str, Any],
) -> str:
    parts = []
    model = found.model
    if model is None:
        parts.append(_missing("No int8 model in the run directory", _quantize_cmd(found)))
    else:
        weights = weight_table(model)
        w_bytes = sum(r["weights_bytes"] for r in weights)
        b_bytes = sum(r["bias_bytes"] for r in weights)
        facts["tflite_bytes"] = model.size
        parts.append("<h3>The int8 model file</h3>")
        parts.append(
            _table(
                ["", "bytes"],
                [
                    [f"{_e(found.rel(model.source))} (whole flatbuffer)", _int(model.size)],
                    ["int8 weights", _int(w_bytes)],
                    ["int32 biases", _int(b_bytes)],
                    [
                        "graph, quantization parameters, other constants",
                        _int(model.size - w_bytes - b_bytes),
                    ],
                ],
                ["", "n"],
            )
        )
    if keras_model is not None:
        from lenet_edge.model import layer_table

        per_op: dict[str, dict[str, Any]] = {}
        if model is not None:
            for w in weight_table(model):
                for layer in keras_model.layers:
                    if any(_in_scope(layer.name, s) for s in w["scopes"]):
                        per_op[layer.name] = w
        rows = []
        for r in layer_table(keras_model):
            op_row = per_op.get(r.name)
            rows.append(
                [
                    _e(r.name),
                    _e(r.kind),
                    _e("×".join(map(str, r.output_shape))),
                    _int(r.params),
                    _int(r.macs),
                    _int(op_row["weights_bytes"] + op_row["bias_bytes"]) if op_row else "–",
                ]
            )
        parts.append("<h3>Per layer</h3>")
        parts.append(
            _table(
                ["layer", "kind", "output", "parameters", "MACs", "int8 .tflite bytes"],
                rows,
                ["", "", "", "n", "n", "n"],
            )
        )
        parts.append(
            '<p class="note">Parameters and MACs count only existing connections (the sparse '
            "C3 of the seed variant has 60 of 96); the int8 bytes are the weights (int8) and "
            "biases (int32) of the layer's op.</p>"
        )

    parts.append("<h3>TensorFlow Lite Micro</h3>")
    arena = (verify_report or {}).get("tflm_arena") or {}
    export_arena = None
    if found.exports:
        export_arena = found.exports[0][1].get("tflm_arena") or {}
    if arena.get("bytes") or export_arena:
        rows = []
        if arena.get("bytes"):
            rows.append(["minimum arena (verify)", _kib(arena["bytes"]), _e(arena.get("note", ""))])
            facts["tflm_arena"] = arena["bytes"]
        if export_arena:
            rows.append(
                [
                    "minimum arena (export-c)",
                    _kib(export_arena.get("measured_bytes")),
                    _e(export_arena.get("note", "")),
                ]
            )
            rows.append(
                [
                    "kTensorArenaSize in the TFLM example",
                    _kib(export_arena.get("kTensorArenaSize")),
                    f"measured + {_int(export_arena.get('margin_bytes'))} B margin",
                ]
            )
        parts.append(_table(["", "bytes", "how"], rows, ["", "n", ""]))
    else:
        parts.append(
            _missing(
                "TFLM arena not measured",
                f"lenet-edge verify {_tflite_rel(found)} --backend tflm",
            )
        )

    parts.append("<h3>Standalone C engine (export-c)</h3>")
    export_cmd = f"lenet-edge export-c {_tflite_rel(found)} --out {found.run_dir.as_posix()}/c"
    if not found.exports:
        parts.append(_missing("Not measured: no export.json in the run directory", export_cmd))
    for path, ex in found.exports:
        wb = ex.get("weight_bytes") or {}
        prefix = str(ex.get("prefix", "lenet"))
        rows = [
            ["weights and tables, total", _kib(wb.get("total"))],
            *[
                [f"&nbsp;&nbsp;{_e(k)}", _int(v)]
                for k, v in sorted(wb.items())
                if k != "total" and isinstance(v, int)
            ],
            [
                f"<code>{_e(prefix.upper())}_SCRATCH_SIZE</code> (activations)",
                _kib(ex.get("scratch_size")),
            ],
            [
                "MACs per inference (engine / TFLM)",
                f"{_int(ex.get('macs'))} / {_int(ex.get('tflm_macs'))}",
            ],
            ["engine layers", _e(", ".join(f"{x.get('name')}" for x in ex.get("layers") or []))],
        ]
        facts.setdefault("scratch_size", ex.get("scratch_size"))
        facts.setdefault("standalone_weight_bytes", wb.get("total"))
        parts.append(f"<p>{_e(found.rel(path))}</p>")
        parts.append(_table(["", "value"], rows, ["", "n"]))

    parts.append("<h3>On the microcontrollers (mcu-test)</h3>")
    boards = found.boards()
    if not boards:
        export_dir = (
            found.exports[0][0].parent.as_posix() if found.exports else f"{found.run_dir}/c"
        )
        cmd = (
            f"lenet-edge mcu-test {export_dir} --board all --json "
            f"{found.run_dir.as_posix()}/mcu.json"
        )
        if not found.exports:
            cmd = f"{export_cmd} && {cmd}"
        parts.append(_missing("Flash, RAM, stack and instruction counts not measured", cmd))
        return "".join(parts)
    rows = []
    for _, b in boards:
        mem = b.get("memory") or {}
        fl, ram, st = mem.get("flash") or {}, mem.get("ram") or {}, mem.get("stack") or {}
        ins = b.get("instructions") or {}
        per_mac = ins.get("per_mac")
        rows.append(
            [
                _e(_board_label(b)),
                _e(b.get("core", "")),
                _c_path(b),
                f"{_int(fl.get('total'))} / {_int(fl.get('size'))}",
                _int(fl.get("library")),
                _int(ram.get("static")),
                _int(st.get("high_water")),
                _int(mem.get("peak_ram")),
                _int(mem.get("library_ram")),
                _int(ins.get("per_inference")),
                "–" if per_mac is None else f"{per_mac:.2f}",
            ]
        )
        if b.get("board") == "stm32vldiscovery":
            facts.setdefault("peak_ram_stm32vldiscovery", mem.get("peak_ram"))
        if b.get("board") == "mps2-an386" and b.get("dsp_path_enabled"):
            facts.setdefault("instructions_m4", ins.get("per_inference"))
    parts.append(
        _table(
            [
                "board",
                "core",
                "C path",
                "flash used / size (B)",
                "library flash (B)",
                "static RAM (B)",
                "stack high water (B)",
                "peak RAM (B)",
                "library RAM (B)",
                "instructions / inference",
                "instructions / MAC",
            ],
            rows,
            ["", "", "", "n", "n", "n", "n", "n", "n", "n", "n"],
        )
    )
    parts.append(
        '<p class="note">Library: the engine code and its weights; peak RAM = static RAM + '
        "the measured stack high-water mark; library RAM = what an application needs for the "
        "engine (scratch, I/O buffers, its statics and its stack). Instructions are exact "
        "counts of one inference under QEMU.</p>"
    )
    parts.append(_img(plot_memory([b for _, b in boards]), "flash and RAM per board"))
    layered = [(p, b) for p, b in boards if (b.get("instructions") or {}).get("per_layer")]
    if layered:
        names = [str(x.get("name")) for x in layered[0][1]["instructions"]["per_layer"]]
        head = [
            "layer",
            "MACs",
            *(f"{_e(_board_label(b))} ({_c_path(b)})" for _, b in layered),
        ]
        rows = []
        for k, name in enumerate(names):
            first = layered[0][1]["instructions"]["per_layer"][k]
            row = [_e(f"{name} ({first.get('kernel')})"), _int(first.get("macs"))]
            for _, b in layered:
                layers = b["instructions"]["per_layer"]
                x = layers[k] if k < len(layers) else {}
                pm = x.get("per_mac")
                row.append(f"{_int(x.get('instructions'))}" + (f" ({pm:.2f}/MAC)" if pm else ""))
            rows.append(row)
        parts.append("<h3>Instructions per layer</h3>")
        parts.append(_table(head, rows, ["", "n", *(["n"] * len(layered))]))
    return "".join(parts)


def _section_fidelity(found: Found, verify_report: dict[str, Any] | None) -> str:
    parts = []
    if verify_report is None:
        return _missing("Not available: no int8 model", _quantize_cmd(found))
    results = verify_report["results"]
    golden = verify_report.get("golden_backend")
    parts.append("<h3>Host interpreters</h3>")
    rows = []
    for name, r in results.items():
        vs = r.get("vs_reference") or {}
        rows.append(
            [
                f"<b>{_e(name)}</b>" + (" (golden)" if name == golden else ""),
                _int(r.get("images")),
                _pct(r.get("accuracy")),
                _pct(vs.get("top1_agreement")) if vs else "–",
                _int(vs.get("disagreements")) if vs else "–",
            ]
        )
    ref = verify_report.get("reference")
    if ref:
        rows.append(
            [
                f"float reference ({_e(ref.get('kind'))})",
                _int(ref.get("images")),
                _pct(ref.get("accuracy")),
                "",
                "",
            ]
        )
    parts.append(
        _table(
            ["backend", "images", "accuracy", "top-1 agreement with float", "disagreements"],
            rows,
            ["", "n", "n", "n", "n"],
        )
    )
    for name, why in (verify_report.get("skipped_backends") or {}).items():
        parts.append(f'<p class="note">{_e(name)} not run: {_e(why)}</p>')
    names = list(results)
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for p in verify_report.get("pairwise") or []:
        cells[(p["a"], p["b"])] = cells[(p["b"], p["a"])] = p
    if len(names) > 1:
        rows = []
        classes = [""]
        for a in names:
            row = [f"<b>{_e(a)}</b>"]
            for b in names:
                if a == b:
                    row.append("—")
                    continue
                p = cells.get((a, b))
                if p is None:
                    row.append("–")
                elif p["images_differ"] == 0:
                    row.append("identical")
                else:
                    size = (
                        f"max {p['max_lsb']} LSB"
                        if p.get("max_lsb") is not None
                        else f"max {p['max_abs_diff']:.3g}"
                    )
                    top = f", top-1 differs on {p['top1_differ']}" if p["top1_differ"] else ""
                    row.append(f"{_int(p['images_differ'])} images differ, {size}{top}")
            rows.append(row)
        classes += [""] * len(names)
        count = _int(verify_report["dataset"]["images"])
        parts.append(
            f"<p>Raw int8 outputs compared image by image over {count} test images (LSB: one "
            "step of the output tensor).</p>"
        )
        parts.append(_table(["", *(_e(n) for n in names)], rows, classes))
    parts.append("<h3>Firmware on the boards (standalone C engine vs TFLM)</h3>")
    boards = [b for _, b in found.boards()]
    if not boards:
        parts.append(
            _missing(
                "Not measured: no mcu-test JSON for this model in the run directory",
                f"lenet-edge mcu-test {found.run_dir.as_posix()}/c --board all --json "
                f"{found.run_dir.as_posix()}/mcu.json",
            )
        )
        return "".join(parts)
    rows = []
    classes = ["", "", "", "", "n", "n", ""]
    for b in boards:
        c = b.get("check") or {}
        ok = b.get("passed") and c.get("mismatched_images") == 0
        rows.append(
            [
                _e(_board_label(b)),
                _e(b.get("core", "")),
                _c_path(b),
                _e(b.get("mode", "")),
                _int(c.get("images")),
                _int(c.get("mismatched_images")),
                "bit-exact" if ok else f"{_int(c.get('mismatched_bytes'))} bytes differ",
            ]
        )
    parts.append(
        _table(
            ["board", "core", "C path", "mode", "images checked", "images differing", "vs TFLM"],
            rows,
            classes,
        )
    )
    return "".join(parts)


def _section_provenance(found: Found) -> str:
    rows = []

    def add(what: str, path: Path | None, command: str | None = None) -> None:
        if path is None or not path.exists():
            return
        rows.append(
            [
                _e(what),
                f"<code>{_e(found.rel(path))}</code>",
                f"<code>{sha256_file(path)[:16]}</code>",
                f"<code>{_e(command)}</code>" if command else "",
            ]
        )

    add("Keras model", found.keras)
    add("training record", found.run_dir / "train.json" if found.train else None)
    if found.tflite is not None:
        add("int8 model", found.tflite, (found.quant[1].get("command") if found.quant else None))
    if found.quant:
        add("quantization record", found.quant[0])
    if found.verify_used is not None:
        path, doc = found.verify_used
        add("verification", path, doc.get("command"))
    for path, doc in found.exports:
        add("C export", path, doc.get("command"))
    for path, _ in found.mcu:
        add("MCU measurements", path)
    parts = [
        _table(["what", "file", "SHA-256 (first 16)", "command"], rows),
        f"<p>Page written by lenet-edge {_e(__version__)}: "
        f"<code>lenet-edge report {_e(found.run_dir.as_posix())}</code>.</p>",
    ]
    versions = (found.train or {}).get("versions") or {}
    if versions:
        parts.append(
            '<p class="note">Training environment: '
            + _e(", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
            + "</p>"
        )
    for note in found.notes:
        parts.append(f'<p class="note">Note: {_e(note)}</p>')
    return "".join(parts)


def _page(found: Found, facts: dict[str, Any], sections: list[tuple[str, str, str]]) -> str:
    name = found.run_dir.resolve().name or str(found.run_dir)
    summary = []
    if "float_accuracy" in facts:
        summary.append(["float accuracy (Keras)", _pct(facts["float_accuracy"])])
    if "int8_accuracy" in facts:
        summary.append(
            [f"int8 accuracy ({_e(facts['int8_backend'])})", _pct(facts["int8_accuracy"])]
        )
    summary.append(["test images", _int(facts["images"])])
    if "tflite_bytes" in facts:
        summary.append([".tflite size", _kib(facts["tflite_bytes"])])
    if "tflm_arena" in facts:
        summary.append(["TFLM arena (host-measured)", _kib(facts["tflm_arena"])])
    if facts.get("standalone_weight_bytes") is not None:
        summary.append(["standalone weights", _kib(facts["standalone_weight_bytes"])])
        summary.append(["standalone scratch", _kib(facts.get("scratch_size"))])
    if facts.get("peak_ram_stm32vldiscovery") is not None:
        summary.append(["peak RAM on stm32vldiscovery", _kib(facts["peak_ram_stm32vldiscovery"])])
    if facts.get("instructions_m4") is not None:
        summary.append(["instructions per inference, Cortex-M4", _int(facts["instructions_m4"])])
    sqnr = {k: v for k, v in (facts.get("sqnr_db") or {}).items() if k != "input"}
    if sqnr:
        worst = min(sqnr, key=lambda k: sqnr[k])
        summary.append(["lowest per-layer SQNR", f"{_db(sqnr[worst])} dB ({_e(worst)})"])
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(t)}</h2>{b}</section>' for sid, t, b in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>lenet-edge report: {_e(name)}</title><style>{CSS}</style></head><body>"
        f"<h1>lenet-edge report: {_e(name)}</h1>"
        f"<nav>{nav}</nav>"
        + _table(["at a glance", ""], summary, ["", "n"])
        + body
        + "</body></html>\n"
    )


def write_report(
    run_dir: Path,
    out: Path | None = None,
    tflite: Path | None = None,
    options: Options | None = None,
) -> tuple[Path, Report]:
    """Discover, measure, render and atomically write the report; return its path."""
    from lenet_edge.fsutil import atomic_write_text, check_output_file

    opts = options or Options()
    target = out if out is not None else run_dir / REPORT_NAME
    check_output_file(target)
    if tflite is not None and sniff_model_file(tflite) != "tflite":
        raise LenetEdgeError(f"--model {tflite}: not a .tflite model")
    found = discover(run_dir, tflite)
    if found.keras is None and found.model is None:
        raise LenetEdgeError(
            f"{run_dir}: no model.keras and no int8 .tflite; give the run directory of "
            "`lenet-edge train`"
        )
    report = build_report(found, opts)
    atomic_write_text(target, report.html)
    return target, report
