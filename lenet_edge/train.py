"""Training: deterministic, augmented, keeping the best epoch by validation accuracy.

The best checkpoint is written (atomically) to ``RUN_DIR/model.keras`` every time validation
accuracy improves, so an interrupted run still leaves a usable model.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenet_edge import __version__, tfenv
from lenet_edge.data import Mnist, preprocess
from lenet_edge.fsutil import atomic_path, atomic_write_json, sha256_file, signals_deferred
from lenet_edge.model import LeNetConfig, build_lenet, layer_table
from lenet_edge.tfenv import seed_everything, tf


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run."""

    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-2
    augment: bool = True
    max_shift: float = 2.0
    max_rotation_deg: float = 8.0
    label_smoothing: float = 0.0
    seed: int = 0
    limit: int | None = None  # train on the first N training images only (tests, smoke runs)


@dataclass
class TrainResult:
    """What a training run produced."""

    best_epoch: int
    val_accuracy: float
    test_accuracy: float
    history: dict[str, list[float]] = field(default_factory=dict)
    interrupted: bool = False
    wall_seconds: float = 0.0


def _augment_fn(cfg: TrainConfig) -> Any:
    """A tf.data map that shifts and rotates each image, seeded by the batch counter."""
    t = tf()
    max_rot = math.radians(cfg.max_rotation_deg)
    center = 15.5  # 32x32 images: rotate about the centre

    def aug(step: Any, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        x, y = batch
        n = t.shape(x)[0]
        seed = t.stack([t.constant(cfg.seed, t.int64), step])
        s1, s2, s3 = (t.random.experimental.stateless_fold_in(seed, i) for i in range(3))
        angle = t.random.stateless_uniform([n], s1, -max_rot, max_rot)
        dx = t.random.stateless_uniform([n], s2, -cfg.max_shift, cfg.max_shift)
        dy = t.random.stateless_uniform([n], s3, -cfg.max_shift, cfg.max_shift)
        cos, sin = t.cos(angle), t.sin(angle)
        # output (x', y') samples input (a0 x' + a1 y' + a2, b0 x' + b1 y' + b2)
        a2 = center - cos * center + sin * center - dx
        b2 = center - sin * center - cos * center - dy
        zeros = t.zeros_like(angle)
        transform = t.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
        out = t.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=transform,
            output_shape=t.shape(x)[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
        return out, y

    return aug


def _dataset(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> Any:
    t = tf()
    ds = t.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size)
    if cfg.augment:
        aug = _augment_fn(cfg)
        ds = ds.enumerate().map(aug, num_parallel_calls=1, deterministic=True)
    return ds.prefetch(2)


def _callbacks(
    out_model: Path, quiet: bool, on_saved: Callable[[dict[str, Any]], None]
) -> tuple[Any, dict[str, Any]]:
    keras = tfenv.keras()

    state: dict[str, Any] = {"best": -1.0, "epoch": 0, "weights": None, "start": time.time()}

    callback_base: Any = keras.callbacks.Callback

    class KeepBest(callback_base):
        """Remember and save the best epoch by validation accuracy; print one line per epoch."""

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            val = float(logs.get("val_accuracy", 0.0))
            mark = ""
            if val > state["best"]:
                # Save first, then remember: an interrupt during the save leaves the previous
                # best both on disk and in ``state``, so what is reported is what is saved.
                weights = self.model.get_weights()
                with atomic_path(out_model) as tmp:
                    keras_tmp = tmp.with_name(tmp.name + ".keras")  # Keras wants the suffix
                    try:
                        self.model.save(keras_tmp)
                        keras_tmp.replace(tmp)
                    finally:
                        keras_tmp.unlink(missing_ok=True)
                state.update(best=val, epoch=epoch + 1, weights=weights)
                on_saved(state)  # the run folder describes the model it holds
                mark = "  * best, saved"
            if not quiet:
                print(
                    f"epoch {epoch + 1:3d}/{self.params['epochs']}  loss {logs.get('loss', 0):.4f}"
                    f"  acc {logs.get('accuracy', 0):.4f}  val_loss {logs.get('val_loss', 0):.4f}"
                    f"  val_acc {val:.4f}  ({time.time() - state['start']:.0f}s){mark}",
                    file=sys.stderr,
                    flush=True,
                )

    return KeepBest(), state


def _save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.get("loss", [])) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, history.get("loss", []), label="train")
    ax1.plot(epochs, history.get("val_loss", []), label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [100 * a for a in history.get("accuracy", [])], label="train")
    ax2.plot(epochs, [100 * a for a in history.get("val_accuracy", [])], label="validation")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "lenet-edge": __version__}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "ai-edge-litert", "tflite-micro"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def json_history(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """``history`` for train.json: a diverged epoch's NaN or infinite value becomes null, so
    the file stays valid JSON."""
    return {k: [v if math.isfinite(v) else None for v in vs] for k, vs in history.items()}


def train(
    mnist: Mnist,
    model_cfg: LeNetConfig,
    cfg: TrainConfig,
    run_dir: Path,
    quiet: bool = False,
) -> TrainResult:
    """Train LeNet-5 and write ``model.keras``, ``train.json`` and ``training_curves.png``."""
    keras = tfenv.keras()

    start = time.time()
    seed_everything(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train = mnist.x_train, mnist.y_train
    if cfg.limit:
        x_train, y_train = x_train[: cfg.limit], y_train[: cfg.limit]
    x_tr = preprocess(x_train)
    x_val, x_test = preprocess(mnist.x_val), preprocess(mnist.x_test)

    model = build_lenet(model_cfg, seed=cfg.seed)
    steps = math.ceil(len(x_tr) / cfg.batch_size) * cfg.epochs
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    onehot = np.eye(10, dtype=np.float32)
    ds = _dataset(x_tr, onehot[y_train], cfg)
    rows = layer_table(model)
    hist_cb = keras.callbacks.History()

    def history_now() -> dict[str, list[float]]:
        return {k: [float(v) for v in vals] for k, vals in hist_cb.history.items()}

    def write_record(state: dict[str, Any], test_acc: float | None, complete: bool) -> None:
        """train.json for the model.keras now on disk: after every checkpoint (marked
        incomplete, so an interrupt at any point leaves a folder that describes its model)
        and once more at the end."""
        history = history_now()
        record = {
            "tool": f"lenet-edge {__version__}",
            "model": model_cfg.as_dict(),
            "train": asdict(cfg),
            "train_images": len(x_tr),
            "validation_images": len(x_val),
            "best_epoch": state["epoch"],
            "epochs_run": len(history.get("loss", [])),
            "val_accuracy": state["best"],
            "test_accuracy": test_acc,
            "interrupted": not complete,
            "history": json_history(history),
            "parameters": sum(r.params for r in rows),
            "macs": sum(r.macs for r in rows),
            "data_sha256": mnist.sha256,
            "model_sha256": sha256_file(run_dir / "model.keras"),
            "versions": package_versions(),
            "wall_seconds": round(time.time() - start, 2),
        }
        if not complete:
            record["note"] = (
                f"written at the epoch-{state['epoch']} checkpoint: training had not finished "
                "(interrupted, or still running), so there is no test accuracy"
            )
        atomic_write_json(run_dir / "train.json", record)

    curves = run_dir / "training_curves.png"

    def on_saved(state: dict[str, Any]) -> None:
        with signals_deferred():  # the model and its record change together
            curves.unlink(missing_ok=True)  # a previous run's curves no longer describe it
            write_record(state, None, complete=False)

    keep_best, state = _callbacks(run_dir / "model.keras", quiet, on_saved)
    if not quiet:
        print(
            f"training {model_cfg.variant} ({model_cfg.activation}, {model_cfg.pooling} pooling,"
            f" {model_cfg.c3} C3) on {len(x_tr)} images for {cfg.epochs} epochs, "
            f"validating on {len(x_val)}",
            file=sys.stderr,
            flush=True,
        )
    interrupted = False
    try:
        model.fit(
            ds,
            epochs=cfg.epochs,
            validation_data=(x_val, onehot[mnist.y_val]),
            validation_batch_size=1000,
            callbacks=[hist_cb, keep_best],
            verbose=0,
            shuffle=False,
        )
    except KeyboardInterrupt:
        interrupted = True
    history = history_now()
    if state["weights"] is None:
        raise KeyboardInterrupt  # nothing complete to keep
    model.set_weights(state["weights"])
    if interrupted:
        test_acc = float("nan")
    else:
        probs = model.predict(x_test, batch_size=1000, verbose=0)
        test_acc = float(np.mean(np.argmax(probs, axis=1) == mnist.y_test))
    result = TrainResult(
        best_epoch=state["epoch"],
        val_accuracy=state["best"],
        test_accuracy=test_acc,
        history=history,
        interrupted=interrupted,
        wall_seconds=time.time() - start,
    )
    # An interrupt from here on leaves the last checkpoint's record, which describes the
    # model.keras on disk; these two writes complete the folder.
    _save_curves(history, curves)
    write_record(state, None if interrupted else test_acc, complete=not interrupted)
    return result
