"""The exact integer emulation behind every export-time constant and table.

Primitives are checked against their mathematical definitions; every int8 table and the
softmax are checked against the TFLM interpreter itself on single-op models built with the
chosen quantization, on all 256 inputs.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as s
from hypothesis import given
from hypothesis import strategies as st

from firmware_export import quantmath as qm
from firmware_export.tflm import TflmModel
from tests.support.tflite_build import single_op_model

INT32 = st.integers(min_value=qm.INT32_MIN, max_value=qm.INT32_MAX)
ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


def _round_half_away(f: Fraction) -> int:
    n = abs(f.numerator) * 2 + f.denominator
    q = n // (2 * f.denominator)
    return q if f >= 0 else -q


def test_quantize_multiplier_known_values() -> None:
    assert qm.quantize_multiplier(0.5) == (1 << 30, 0)
    assert qm.quantize_multiplier(1.0) == (1 << 30, 1)
    assert qm.quantize_multiplier(0.75) == (3 << 29, 0)
    assert qm.quantize_multiplier(0.0) == (0, 0)
    assert qm.quantize_multiplier(2.0**-40) == (0, 0)  # flushed like TFLM (shift < -31)
    # q * 2^31 rounds up to 2^31: halved and the shift bumped, as TFLM does.
    assert qm.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)
    m, sh = qm.quantize_multiplier(0.003921568859368563 * 0.0015 / 0.012)
    assert 1 << 30 <= m < 1 << 31 and sh < 0


@given(st.floats(min_value=1e-9, max_value=1e4, allow_nan=False))
def test_quantize_multiplier_is_accurate(real: float) -> None:
    m, sh = qm.quantize_multiplier(real)
    assert 1 << 30 <= m < 1 << 31
    assert abs(m * 2.0 ** (sh - 31) - real) <= real * 2.0**-30


@given(INT32, INT32)
def test_srdhm_is_round_half_up_of_the_doubled_high_product(a: int, b: int) -> None:
    """gemmlowp's nudge-then-truncate equals floor(a * b / 2^31 + 1/2) for every pair."""
    if a == b == qm.INT32_MIN:
        assert qm.srdhm(a, b) == qm.INT32_MAX
    else:
        assert qm.srdhm(a, b) == (a * b + (1 << 30)) >> 31


@given(INT32, st.integers(min_value=0, max_value=31))
def test_rdbpot_rounds_half_away_from_zero(x: int, e: int) -> None:
    assert qm.rdbpot(x, e) == _round_half_away(Fraction(x, 1 << e))


@given(
    st.integers(min_value=-(1 << 24), max_value=1 << 24), st.floats(min_value=1e-6, max_value=0.99)
)
def test_mbqm_double_rounding_close_to_exact(x: int, real: float) -> None:
    m, sh = qm.quantize_multiplier(real)
    exact = Fraction(x) * m * Fraction(2) ** (sh - 31)
    assert abs(qm.mbqm(x, m, sh) - exact) <= 1


def test_fixed_point_functions_track_the_real_ones() -> None:
    for v in np.linspace(-7.9, 7.9, 97):
        raw = round(v * (1 << 27))  # Q4.27
        assert abs(qm.fixed_logistic(raw, 4) / 2**31 - 1 / (1 + np.exp(-v))) < 1e-6
        assert abs(qm.fixed_tanh(raw, 4) / 2**31 - np.tanh(v)) < 1e-5
    for v in np.linspace(-31.9, 0, 65):
        raw = round(v * (1 << 26))  # Q5.26
        assert abs(qm.exp_on_negative_values(raw, 5) / 2**31 - np.exp(v)) < 1e-6


def _tflm_all_int8(model: bytes) -> list[int]:
    return TflmModel(model).invoke(ALL_INT8)[0].astype(int).tolist()


def _quant_params(seed: int) -> tuple[float, int, float, int]:
    rng = np.random.default_rng(seed)
    return (
        float(np.float32(10 ** rng.uniform(-3.5, 0.3))),
        int(rng.integers(-128, 128)),
        float(np.float32(10 ** rng.uniform(-3.5, 0.3))),
        int(rng.integers(-128, 128)),
    )


@pytest.mark.parametrize("seed", range(12))
def test_tables_equal_tflm_on_all_256_inputs(seed: int) -> None:
    sc, zp, osc, ozp = _quant_params(seed)
    p = qm.sigmoid_params(sc, zp)
    assert _tflm_all_int8(single_op_model("LOGISTIC", 256, sc, zp, 1 / 256, -128)) == [
        qm.logistic_int8(x, p) for x in range(-128, 128)
    ]
    assert _tflm_all_int8(single_op_model("TANH", 256, sc, zp, 1 / 128, 0)) == [
        qm.tanh_int8(x, p) for x in range(-128, 128)
    ]
    assert _tflm_all_int8(single_op_model("RELU", 256, sc, zp, osc, ozp)) == qm.relu_int8_table(
        sc, zp, osc, ozp
    )
    assert _tflm_all_int8(single_op_model("RELU6", 256, sc, zp, sc, zp)) == qm.relu6_int8_table(
        sc, zp
    )
    assert _tflm_all_int8(
        single_op_model("QUANTIZE", 256, sc, zp, osc, ozp)
    ) == qm.requantize_int8_table(sc, zp, osc, ozp)


@pytest.mark.parametrize("seed", range(6))
def test_softmax_equals_tflm(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    depth = int(rng.integers(2, 40))
    scale = float(np.float32(10 ** rng.uniform(-2.5, -0.3)))
    zp = int(rng.integers(-128, 128))
    beta = [1.0, 0.5, 2.0][seed % 3]
    opts = s.SoftmaxOptionsT()
    opts.beta = beta
    model = single_op_model("SOFTMAX", depth, scale, zp, 1 / 256, -128, opts, "SoftmaxOptions")
    rows = rng.integers(-128, 128, size=(200, depth), dtype=np.int8)
    rows[0] = 5  # all equal
    rows[1] = -128
    rows[1, 0] = 127  # one dominant value, the others beyond diff_min
    rows[2] = rng.integers(120, 128, size=depth)  # a tight spread
    expected = TflmModel(model).run(rows.reshape(200, 1, depth)).reshape(200, depth)
    table = qm.softmax_exp_table(qm.softmax_params(beta, scale))
    got = np.array([qm.softmax_int8(r.astype(int).tolist(), table) for r in rows])
    assert np.array_equal(got, expected)


def test_activation_ranges() -> None:
    assert qm.activation_range("NONE", 0.1, 3) == (-128, 127)
    assert qm.activation_range("RELU", 0.1, 3) == (3, 127)
    assert qm.activation_range("RELU6", 0.1, -100) == (-100, -40)
    assert qm.activation_range("RELU6", 0.01, 0) == (0, 127)
    assert qm.activation_range("RELU_N1_TO_1", 0.5, 0) == (-2, 2)


@given(
    st.floats(min_value=2.0**-20, max_value=0.99),
    st.integers(min_value=-128, max_value=127),
    st.integers(min_value=0, max_value=(1 << 30) - 1),
    st.data(),
)
def test_fast_requantization_is_tflm_double_rounding(
    real: float, zp: int, bound: int, data: st.DataObject
) -> None:
    """The kernels' fast form (one rounding high multiply of the doubled accumulator, one
    add-and-shift with the zero point folded in) equals TFLM's MultiplyByQuantizedMultiplier
    plus the zero point on every accumulator the plan allows it for."""
    from firmware_export.plan import fast_requant as _fast_requant

    m, shift = qm.quantize_multiplier(real)
    fast = _fast_requant([shift], zp, bound)
    if fast is None:
        assert shift >= 0 or bound + 1 + abs((1 << (-shift - 1)) + zp * (1 << -shift)) > (
            qm.INT32_MAX
        )
        return
    acc = data.draw(st.integers(min_value=-bound, max_value=bound))
    got = qm.requantize_fast(acc, m, fast.round[0], fast.rshift[0])
    assert got == qm.mbqm(acc, m, shift) + zp
    # Halfway cases, where the two roundings differ most: x exactly on a .5 boundary.
    for x in (acc, -acc, (1 << (fast.rshift[0] - 1)), -(1 << (fast.rshift[0] - 1))):
        if abs(x) <= bound:
            assert (
                qm.requantize_fast(x, m, fast.round[0], fast.rshift[0]) == qm.mbqm(x, m, shift) + zp
            )


def test_tile_pairs_cover_every_tap_once() -> None:
    from firmware_export.tile import TileShape

    for kh in range(1, 8):
        for kw in range(1, 8):
            shape = TileShape(kh, kw)
            pairs = shape.pairs()
            taps = [p.low for p in pairs] + [p.high for p in pairs if p.high is not None]
            assert sorted(taps) == [(y, x) for y in range(kh) for x in range(kw)]
            assert len(pairs) == (kh // 2) * kw + (kh % 2) * ((kw + 1) // 2)
            for p in pairs:  # words inside the tile of one block
                assert p.row >= 0 and p.row + 1 < shape.rows and p.col + 1 < shape.width(1)
                if p.row < shape.kv:  # vertical pair: (ky, kx) and (ky + 1, kx)
                    assert p.low == (p.row, p.col) and p.high == (p.row + 1, p.col)
                else:  # horizontal pair in the last row
                    assert p.low == (kh - 1, p.col)
