"""lenet_edge.engine_bench: the host throughput harness builds the exported engine, runs every
image, and refuses outputs that differ from the expected ones. No timing is asserted (the
machine is shared): only that the figures exist and are consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_export.export import export_model, write_export
from firmware_export.tflm import engine_reference_outputs
from lenet_edge import engine_bench
from lenet_edge.errors import LenetEdgeError
from tests.support.export_helpers import requires

pytestmark = requires("gcc")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, int8_model: Any, mnist: Any) -> Path:
    model = int8_model()
    result = export_model(model.read_bytes(), model_name=model.name, n_vectors=2)
    return write_export(result, tmp_path_factory.mktemp("bench") / "c")


@pytest.mark.parametrize("flags", [("-O2",), engine_bench.DEFAULT_FLAGS])
def test_measure_engine_checks_every_output(
    export_dir: Path, mnist: Any, flags: tuple[str, ...]
) -> None:
    images = mnist.x_test[:60]
    x = engine_bench.engine_inputs(export_dir, images)
    model = (export_dir / "model.tflite").read_bytes()
    expected = engine_reference_outputs(model, x.reshape(len(x), 32, 32, 1))
    r = engine_bench.measure_engine(
        export_dir, images=images, expected=expected, flags=flags, passes=2, chunk=25
    )
    assert r["bit_exact"] and r["images"] == 60 and r["build"] == " ".join(flags)
    assert 0 < r["us_per_image"] <= r["us_per_image_best_pass"] * 1.001
    assert r["simd"] in ("portable", "avx2", "avx512")
    if flags == ("-O2",):
        assert r["simd"] == "portable"
    wrong = expected.copy()
    wrong[7, 3] ^= 1
    with pytest.raises(LenetEdgeError, match="differ from the expected ones on 1 images"):
        engine_bench.measure_engine(
            export_dir, images=images, expected=wrong, flags=flags, passes=1, chunk=25
        )


def test_measure_litert_times_every_image(export_dir: Path, mnist: Any) -> None:
    x = engine_bench.engine_inputs(export_dir, mnist.x_test[:40]).reshape(40, 32, 32, 1)
    model = (export_dir / "model.tflite").read_bytes()
    r = engine_bench.measure_litert(model, x, passes=1, chunk=16)
    assert r["images"] == 40 and r["us_per_image"] > 0 and r["threads"] == 1
    assert np.isfinite(r["ns_per_image"])
