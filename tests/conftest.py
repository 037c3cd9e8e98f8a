"""Shared fixtures: real MNIST, and small trained / quantized LeNets built once per session.

Short training runs (10,000 images, 2 epochs, no augmentation; about 84% for the sigmoid seed
model, 90%+ for the others) are enough for the tests: they exercise arithmetic and artifacts,
not accuracy. Each distinct configuration is trained and quantized once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_export.mnist import quantize_images
from lenet_edge import data


@pytest.fixture(scope="session")
def mnist() -> data.Mnist:
    """Real MNIST (fetched into the user cache on first use, SHA-256 verified)."""
    return data.load()


ModelFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, mnist: data.Mnist) -> ModelFactory:
    """``trained_model(variant=..., activation=..., pooling=..., c3=..., epochs=2, limit=10000)``
    returns the run directory of a short real training run (cached per configuration)."""
    from lenet_edge.model import LeNetConfig
    from lenet_edge.train import TrainConfig, train

    cache: dict[tuple[Any, ...], Path] = {}

    def make(
        variant: str = "seed",
        activation: str | None = None,
        pooling: str | None = None,
        c3: str | None = None,
        epochs: int = 2,
        limit: int = 10000,
        seed: int = 0,
        batch_size: int = 64,
        augment: bool = False,
    ) -> Path:
        key = (variant, activation, pooling, c3, epochs, limit, seed, batch_size, augment)
        if key not in cache:
            run_dir = tmp_path_factory.mktemp("run")
            cfg = LeNetConfig.resolve(variant, activation, pooling, c3)
            tcfg = TrainConfig(
                epochs=epochs, limit=limit, seed=seed, batch_size=batch_size, augment=augment
            )
            train(mnist, cfg, tcfg, run_dir, quiet=True)
            cache[key] = run_dir
        return cache[key]

    return make


@pytest.fixture(scope="session")
def int8_model(
    tmp_path_factory: pytest.TempPathFactory, mnist: data.Mnist, trained_model: ModelFactory
) -> ModelFactory:
    """``int8_model(per_channel=True, io="int8", **trained_model_kwargs)`` returns the path of a
    full-int8 ``.tflite`` quantized from a short training run (cached per configuration)."""
    from lenet_edge.model import load_keras_model
    from lenet_edge.quantize import calibration_images, convert_int8

    cache: dict[tuple[Any, ...], Path] = {}

    def make(per_channel: bool = True, io: str = "int8", **kw: Any) -> Path:
        key = (per_channel, io, tuple(sorted(kw.items())))
        if key not in cache:
            run_dir = trained_model(**kw)
            model = load_keras_model(str(run_dir / "model.keras"))
            calib = data.preprocess(calibration_images(mnist.x_train, 200, seed=0))
            flat = convert_int8(model, calib, per_channel=per_channel, io_type=io)
            out = tmp_path_factory.mktemp("int8") / "model_int8.tflite"
            out.write_bytes(flat)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def test_inputs_int8(mnist: data.Mnist) -> Callable[[float, int], np.ndarray]:
    """Quantize the 10k preprocessed test images with a given (scale, zero_point)."""

    def make(scale: float, zero_point: int) -> np.ndarray:
        return quantize_images(data.preprocess(mnist.x_test), scale, zero_point)

    return make
