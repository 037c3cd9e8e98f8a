"""The report's figures: matplotlib (Agg) to PNG bytes without metadata, so that the same
data always gives the same bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lenet_edge.report.discover import board_label

GRID_COLUMNS = 12


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
    labels = [board_label(b) for b in boards]
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
