"""LeNet-5 architecture: the C3 table, parameter and MAC counts, the mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lenet_edge.model import (
    LeNetConfig,
    build_lenet,
    c3_mask,
    c3_table,
    layer_table,
    load_keras_model,
)

# LeCun et al. 1998, Table I, read column by column (C3 map -> S2 maps).
TABLE_I = {
    0: {0, 1, 2},
    1: {1, 2, 3},
    2: {2, 3, 4},
    3: {3, 4, 5},
    4: {4, 5, 0},
    5: {5, 0, 1},
    6: {0, 1, 2, 3},
    7: {1, 2, 3, 4},
    8: {2, 3, 4, 5},
    9: {3, 4, 5, 0},
    10: {4, 5, 0, 1},
    11: {5, 0, 1, 2},
    12: {0, 1, 3, 4},
    13: {1, 2, 4, 5},
    14: {0, 2, 3, 5},
    15: {0, 1, 2, 3, 4, 5},
}


def test_c3_table_entry_by_entry() -> None:
    table = c3_table()
    assert len(table) == 16
    for out_map, inputs in enumerate(table):
        assert set(inputs) == TABLE_I[out_map], out_map
    assert sum(len(t) for t in table) == 60
    mask = c3_mask()
    assert mask.shape == (5, 5, 6, 16)
    for out_map in range(16):
        for in_map in range(6):
            expected = 1.0 if in_map in TABLE_I[out_map] else 0.0
            assert np.all(mask[:, :, in_map, out_map] == expected)


SEED_ROWS = [
    ("c1", (28, 28, 6), 156, 117_600),
    ("s2", (14, 14, 6), 0, 0),
    ("c3", (10, 10, 16), 1_516, 150_000),
    ("s4", (5, 5, 16), 0, 0),
    ("flatten", (400,), 0, 0),
    ("f5", (120,), 48_120, 48_000),
    ("f6", (84,), 10_164, 10_080),
    ("output", (10,), 850, 840),
]


def test_seed_parameters_and_macs_per_layer() -> None:
    rows = layer_table(build_lenet(LeNetConfig.resolve("seed")))
    assert [(r.name, r.output_shape, r.params, r.macs) for r in rows] == SEED_ROWS
    assert sum(r.params for r in rows) == 60_806
    assert sum(r.macs for r in rows) == 326_520
    # The C3 figures follow from Table I: 60 connections of 5x5 plus 16 biases; 10x10 outputs.
    assert 60 * 25 + 16 == 1_516 and 10 * 10 * 60 * 25 == 150_000


def test_modern_variant_and_overrides() -> None:
    modern = layer_table(build_lenet(LeNetConfig.resolve("modern")))
    c3 = next(r for r in modern if r.name == "c3")
    assert (c3.params, c3.macs) == (6 * 16 * 25 + 16, 240_000)
    assert sum(r.macs for r in modern) == 416_520
    cfg = LeNetConfig.resolve("seed", activation="tanh", pooling="max")
    assert (cfg.activation, cfg.pooling, cfg.c3) == ("tanh", "max", "sparse")
    model = build_lenet(cfg)
    assert model.get_layer("c1").activation.__name__ == "tanh"
    assert type(model.get_layer("s2")).__name__ == "MaxPooling2D"
    with pytest.raises(ValueError, match="unknown variant"):
        LeNetConfig.resolve("vgg")


def test_fresh_sparse_c3_is_masked() -> None:
    kernel = build_lenet(LeNetConfig.resolve("seed")).get_layer("c3").get_weights()[0]
    assert np.all(kernel[c3_mask() == 0] == 0)
    assert np.count_nonzero(kernel) == 60 * 25


def test_mask_survives_training(trained_model) -> None:  # type: ignore[no-untyped-def]
    run_dir: Path = trained_model()
    kernel = load_keras_model(str(run_dir / "model.keras")).get_layer("c3").get_weights()[0]
    assert np.all(kernel[c3_mask() == 0] == 0.0)
    assert np.count_nonzero(kernel[c3_mask() == 1]) == 60 * 25
