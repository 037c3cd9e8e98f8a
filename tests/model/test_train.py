"""A short real training run: artifacts and determinism."""

from __future__ import annotations

import json
from pathlib import Path

from lenet_edge import data
from lenet_edge.model import LeNetConfig, load_keras_model
from lenet_edge.train import TrainConfig, train


def test_short_run_writes_every_artifact(trained_model) -> None:  # type: ignore[no-untyped-def]
    run_dir: Path = trained_model()
    assert (run_dir / "model.keras").stat().st_size > 100_000
    png = (run_dir / "training_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    rec = json.loads((run_dir / "train.json").read_text())
    for key in (
        "history",
        "val_accuracy",
        "test_accuracy",
        "data_sha256",
        "versions",
        "wall_seconds",
        "best_epoch",
        "model",
        "train",
    ):
        assert key in rec, key
    assert rec["model"] == {
        "variant": "seed",
        "activation": "sigmoid",
        "pooling": "avg",
        "c3": "sparse",
    }
    assert rec["train"]["seed"] == 0 and rec["parameters"] == 60_806
    assert set(rec["data_sha256"]) == set(data.IDX_SHA256)
    assert len(rec["history"]["val_accuracy"]) == 2
    assert 0.5 < rec["test_accuracy"] <= 1.0
    assert not list(run_dir.glob(".*tmp"))


def test_same_seed_same_weights(mnist: data.Mnist, tmp_path: Path) -> None:
    """Two runs with the same seed (augmentation on, as by default) give identical weights."""
    weights = []
    for name in ("a", "b"):
        cfg = TrainConfig(epochs=1, limit=3000, seed=7, augment=True)
        train(mnist, LeNetConfig.resolve("seed"), cfg, tmp_path / name, quiet=True)
        weights.append(load_keras_model(str(tmp_path / name / "model.keras")).get_weights())
    assert len(weights[0]) == len(weights[1]) == 10
    for a, b in zip(*weights, strict=True):
        assert a.tobytes() == b.tobytes()
    cfg = TrainConfig(epochs=1, limit=3000, seed=8, augment=True)
    train(mnist, LeNetConfig.resolve("seed"), cfg, tmp_path / "c", quiet=True)
    other = load_keras_model(str(tmp_path / "c" / "model.keras")).get_weights()
    assert any(a.tobytes() != b.tobytes() for a, b in zip(weights[0], other, strict=True))


def test_diverged_history_stays_valid_json() -> None:
    import json
    import math

    from lenet_edge.train import json_history

    doc = json_history({"loss": [0.5, math.nan, math.inf], "val_accuracy": [0.1, 0.2, 0.3]})
    text = json.dumps(doc, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text) == {"loss": [0.5, None, None], "val_accuracy": [0.1, 0.2, 0.3]}
