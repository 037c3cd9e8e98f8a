"""LeNet-5 in Keras: the ``seed`` architecture of LeCun et al. (1998) and a ``modern`` variant.

``seed``: 32×32×1 input; C1 6@5×5 valid; S2 2×2 average pool; C3 16@5×5 with the sparse
connection table of Table I (a masked ordinary convolution, so it converts to a plain CONV_2D
whose missing connections are exact zeros); S4 average pool; F5 120; F6 84; 10-way softmax;
sigmoid activations. ``modern``: ReLU, max pooling and a dense C3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenet_edge import tfenv
from lenet_edge.errors import ModelFileError, first_line

VARIANTS: dict[str, dict[str, str]] = {
    "seed": {"activation": "sigmoid", "pooling": "avg", "c3": "sparse"},
    "modern": {"activation": "relu", "pooling": "max", "c3": "full"},
}
ACTIVATIONS = ("sigmoid", "tanh", "relu")
POOLINGS = ("avg", "max")
C3_MODES = ("sparse", "full")


def c3_table() -> list[tuple[int, ...]]:
    """S2 input maps feeding each of the 16 C3 maps (LeCun et al. 1998, Table I)."""
    table: list[tuple[int, ...]] = []
    for i in range(6):
        table.append(tuple(sorted((i + k) % 6 for k in range(3))))
    for j in range(6):
        table.append(tuple(sorted((j + k) % 6 for k in range(4))))
    table += [(0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5)]
    return table


def c3_mask(kernel_size: int = 5) -> np.ndarray:
    """The C3 kernel mask, shape ``[k, k, 6, 16]``: 1 where a connection exists, else 0."""
    mask = np.zeros((kernel_size, kernel_size, 6, 16), dtype=np.float32)
    for out_map, inputs in enumerate(c3_table()):
        mask[:, :, list(inputs), out_map] = 1.0
    return mask


@dataclass(frozen=True)
class LeNetConfig:
    """What to build: the variant name and its resolved options."""

    variant: str = "seed"
    activation: str = "sigmoid"
    pooling: str = "avg"
    c3: str = "sparse"

    @classmethod
    def resolve(
        cls,
        variant: str = "seed",
        activation: str | None = None,
        pooling: str | None = None,
        c3: str | None = None,
    ) -> LeNetConfig:
        """Start from ``variant`` and apply any overrides."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        base = VARIANTS[variant]
        return cls(
            variant=variant,
            activation=activation or base["activation"],
            pooling=pooling or base["pooling"],
            c3=c3 or base["c3"],
        )

    def as_dict(self) -> dict[str, str]:
        """Plain-dict form for JSON."""
        return {
            "variant": self.variant,
            "activation": self.activation,
            "pooling": self.pooling,
            "c3": self.c3,
        }


def _register() -> Any:
    keras = tfenv.keras()
    constraint_base: Any = keras.constraints.Constraint

    @keras.saving.register_keras_serializable(package="lenet_edge", name="ConnectionMask")
    class ConnectionMask(constraint_base):
        """Keeps masked kernel entries exactly zero after every optimizer step."""

        def __init__(self, mask: Any) -> None:
            self.mask = np.asarray(mask, dtype=np.float32)

        def __call__(self, w: Any) -> Any:
            return w * keras.ops.convert_to_tensor(self.mask, dtype=w.dtype)

        def get_config(self) -> dict[str, Any]:
            return {"mask": self.mask.astype(int).tolist()}

    return ConnectionMask


_MASK_CLS: Any = None


def connection_mask_class() -> Any:
    """The Keras constraint class (registered once, so saved models load)."""
    global _MASK_CLS
    if _MASK_CLS is None:
        _MASK_CLS = _register()
    return _MASK_CLS


def build_lenet(config: LeNetConfig | None = None, seed: int = 0) -> Any:
    """Build an uncompiled Keras LeNet-5 for ``config`` (default: ``seed``)."""
    keras = tfenv.keras()

    cfg = config or LeNetConfig()
    act = cfg.activation
    pool = keras.layers.AveragePooling2D if cfg.pooling == "avg" else keras.layers.MaxPooling2D
    init = keras.initializers.GlorotUniform
    constraint = connection_mask_class()(c3_mask()) if cfg.c3 == "sparse" else None

    inputs = keras.Input(shape=(32, 32, 1), name="image")
    x = keras.layers.Conv2D(6, 5, activation=act, kernel_initializer=init(seed), name="c1")(inputs)
    x = pool(2, name="s2")(x)
    x = keras.layers.Conv2D(
        16,
        5,
        activation=act,
        kernel_initializer=init(seed + 1),
        kernel_constraint=constraint,
        name="c3",
    )(x)
    x = pool(2, name="s4")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(120, activation=act, kernel_initializer=init(seed + 2), name="f5")(x)
    x = keras.layers.Dense(84, activation=act, kernel_initializer=init(seed + 3), name="f6")(x)
    outputs = keras.layers.Dense(
        10, activation="softmax", kernel_initializer=init(seed + 4), name="output"
    )(x)
    model = keras.Model(inputs, outputs, name=f"lenet5_{cfg.variant}")
    if constraint is not None:
        c3 = model.get_layer("c3")
        kernel, bias = c3.get_weights()
        c3.set_weights([kernel * c3_mask(), bias])
    return model


@dataclass(frozen=True)
class LayerRow:
    """One row of ``lenet-edge model summary``."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def layer_table(model: Any) -> list[LayerRow]:
    """Per-layer output shape, trainable parameters and MACs (batch 1).

    Masked convolution weights count only where the mask is 1: a sparse C3 has 60
    connections × 25 + 16 biases = 1,516 parameters and 10×10×1,500 = 150,000 MACs.
    """
    keras = tfenv.keras()

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out_shape = tuple(int(d) for d in layer.output.shape[1:])
        params = macs = 0
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            mask = getattr(layer.kernel_constraint, "mask", None)
            kh, kw = kernel.shape[:2]
            connections = (
                int(mask[0, 0].sum()) if mask is not None else kernel.shape[2] * kernel.shape[3]
            )
            params = connections * kh * kw + bias.size
            macs = out_shape[0] * out_shape[1] * connections * kh * kw
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            params = kernel.size + bias.size
            macs = kernel.size
        rows.append(LayerRow(layer.name, type(layer).__name__, out_shape, params, macs))
    return rows


def load_keras_model(path: str | Path) -> Any:
    """Load a ``.keras`` model saved by lenet-edge (or any plain Keras model); a file Keras
    cannot load is a one-line :class:`ModelFileError`."""
    keras = tfenv.keras()

    connection_mask_class()
    try:
        with tfenv.quiet_stderr():
            return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(f"{path}: cannot load the Keras model ({first_line(exc)})") from None


def keras_input_shape(keras_model: Any) -> list[int]:
    """The model's input shape with a batch of 1 (unknown dimensions as 1)."""
    return [1, *(int(d or 1) for d in keras_model.inputs[0].shape[1:])]
