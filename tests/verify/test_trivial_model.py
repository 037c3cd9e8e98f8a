"""lenet_edge.trivial_model: the model that measures the bench's per-image loop overhead has
exactly the seed model's input and output tensors, runs in LiteRT with both kernel sets, and
computes what it says (a copy and one requantization), so that timing it times the loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lenet_edge.errors import LenetEdgeError
from lenet_edge.interpreters import LiteRTRunner, parse_tflite
from lenet_edge.trivial_model import trivial_model
from tests.support.tflite_build import ModelBuilder


@pytest.fixture(scope="module")
def seed(int8_model: Any) -> bytes:
    return bytes(int8_model().read_bytes())


def _interface(details: dict[str, Any]) -> tuple[Any, ...]:
    q = details["quantization_parameters"]
    return (
        details["name"],
        tuple(details["shape"]),
        tuple(details["shape_signature"]),
        details["dtype"],
        details["quantization"],
        tuple(q["scales"]),
        tuple(q["zero_points"]),
        q["quantized_dimension"],
    )


def test_same_input_and_output_tensors_as_the_seed_model(seed: bytes) -> None:
    model, trivial = parse_tflite(seed), parse_tflite(trivial_model(seed))
    assert model.input.shape == (1, 32, 32, 1) and model.output.shape == (1, 10)
    for a, b in ((model.input, trivial.input), (model.output, trivial.output)):
        assert (a.name, a.shape, a.dtype, a.scales, a.zero_points) == (
            b.name,
            b.shape,
            b.dtype,
            b.scales,
            b.zero_points,
        )
    assert [op.name for op in trivial.ops] == ["RESHAPE", "SLICE", "QUANTIZE"]
    for reference in (False, True):  # as each LiteRT variant of the bench sees them
        it_model = LiteRTRunner(seed, reference=reference)._it
        it_trivial = LiteRTRunner(trivial_model(seed), reference=reference)._it
        for get in ("get_input_details", "get_output_details"):
            (a,) = getattr(it_model, get)()
            (b,) = getattr(it_trivial, get)()
            assert _interface(a) == _interface(b), get


@pytest.mark.parametrize("reference", [False, True], ids=["xnnpack", "reference-kernels"])
def test_runs_in_litert_and_requantizes_the_first_values(
    seed: bytes, mnist: Any, reference: bool
) -> None:
    trivial = trivial_model(seed)
    info = parse_tflite(trivial)
    runner = LiteRTRunner(trivial, reference=reference)
    ops = [d["op_name"] for d in runner._it._get_ops_details()]
    # XNNPACK takes the whole graph (one delegate node), as it takes most of the model's.
    assert ("DELEGATE" in ops) is not reference
    rng = np.random.default_rng(0)
    xs = rng.integers(-128, 128, size=(20, 32, 32, 1), dtype=np.int8)
    xs[0, 0, :10, 0] = [-128, -127, -1, 0, 1, 2, 63, 64, 126, 127]
    i, o = info.input, info.output
    for x in xs:
        got = runner.invoke(x[None])
        assert got.shape == (1, 10) and got.dtype == np.int8
        real = (x.reshape(-1)[:10].astype(np.float64) - i.zero_point) * i.scale
        want = np.clip(np.floor(real / o.scale + 0.5) + o.zero_point, -128, 127)
        np.testing.assert_array_equal(got[0], want.astype(np.int8))


def test_the_same_bytes_every_time_and_small(seed: bytes) -> None:
    a, b = trivial_model(seed), trivial_model(seed)
    assert a == b and len(a) < 2048 < len(seed)


def test_refuses_what_it_cannot_mirror() -> None:
    b = ModelBuilder()
    x = b.tensor([1, 4], "FLOAT32", name="x")
    y = b.tensor([1, 4], "FLOAT32", name="y")
    b.op("RELU", [x], [y])
    with pytest.raises(LenetEdgeError, match="input FLOAT32 and output FLOAT32"):
        trivial_model(b.build([x], [y]))
    b = ModelBuilder()
    x = b.tensor([1, 4], "INT8", 0.5, 0, name="x")
    y = b.tensor([1, 8], "INT8", 0.5, 0, name="y")
    b.op("RELU", [x], [y])
    with pytest.raises(LenetEdgeError, match="no larger than the input"):
        trivial_model(b.build([x], [y]))
    with pytest.raises(LenetEdgeError, match="cannot read the model"):
        trivial_model(b"\0" * 64)
