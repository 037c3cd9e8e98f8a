"""Exact integer emulation of the arithmetic TFLM runs, for export-time constants and tables.

TFLM (the runtime on the MCU) computes multipliers, shifts and radii at Prepare time from the
float32 scales stored in the model, partly in double precision, and then runs integer-only
kernels: ``MultiplyByQuantizedMultiplier`` with *double rounding* (TFLM is built without
``TFLITE_SINGLE_ROUNDING``) and gemmlowp's fixed-point ``exp``/``logistic``/``tanh``. This module
reproduces both halves in Python with unbounded integers reduced to int32 where C++ would, so
that every int8 -> int8 elementwise op becomes an exact 256-entry table and every multiplier in
the generated C equals the one TFLM would compute.

Written from the published semantics of those functions; verified against the TFLM interpreter
by the tests (every table on all 256 inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware_export.errors import FirmwareExportError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap32(x: int) -> int:
    """Reduce to int32 the way two's-complement hardware does."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _trunc_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero), b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def round_half_away(x: float) -> float:
    """``std::round``: nearest integer, halves away from zero (exact for any double)."""
    if x < 0:
        return -round_half_away(-x)
    r = math.floor(x)
    return r + 1.0 if x - r >= 0.5 else float(r)


# ----------------------------------------------------------------------------- multipliers


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier`` (double rounding build): ``real ~= m * 2**(shift - 31)``.

    Returns ``(m, shift)`` with ``m`` in ``[2**30, 2**31)`` (or 0) and ``shift`` a left shift
    when positive, a right shift when negative.
    """
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        raise FirmwareExportError(f"non-finite requantization multiplier {real!r}")
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * float(1 << 31)))
    if q_fixed > (1 << 31):
        raise FirmwareExportError(f"multiplier {real!r} cannot be quantized")
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def srdhm(a: int, b: int) -> int:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 (ARM VQRDMULH)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return wrap32(_trunc_div(ab + nudge, 1 << 31))


def rdbpot(x: int, exponent: int) -> int:
    """gemmlowp ``RoundingDivideByPOT``: rounding arithmetic right shift (halves away from 0)."""
    if not 0 <= exponent <= 31:
        raise ValueError(f"RoundingDivideByPOT exponent {exponent} out of [0, 31]")
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x: int, multiplier: int, shift: int) -> int:
    """TFLite ``MultiplyByQuantizedMultiplier(int32 x, m, shift)``, double rounding."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdbpot(srdhm(wrap32(x * (1 << left)), multiplier), right)


def mulhi_round(a: int, m: int) -> int:
    """``floor((a * m + 2^31) / 2^32)``: the engine's rounding high multiply (one ``SMMULR``
    on Cortex-M DSP cores), for int32 ``a`` and ``0 <= m < 2^31``."""
    return (a * m + (1 << 31)) >> 32


def requantize_fast(acc: int, multiplier: int, rnd: int, rshift: int) -> int:
    """The engine's fast requantization of ``acc`` (see ``plan.FastRequant``), as the C code
    computes it: ``x = mulhi_round(2 * acc, m)`` is gemmlowp's ``srdhm(acc, m)``, and
    ``(x + (acc >> 31) + rnd) >> rshift`` with ``rnd = 2^(rshift-1) + zp * 2^rshift`` is
    ``RoundingDivideByPOT(x, rshift) + zp`` (halves away from zero; the sign comes from
    ``acc`` so that C can add it inside the multiply). ``mbqm(acc, m, -rshift) + zp``
    whenever the plan allows it (|acc| < 2^30, no overflow in the sum)."""
    x = mulhi_round(2 * acc, multiplier)
    return (x + (acc >> 31) + rnd) >> rshift


def mbqm_greater_than_one(x: int, multiplier: int, left_shift: int) -> int:
    """TFLite ``MultiplyByQuantizedMultiplierGreaterThanOne`` (double rounding build)."""
    return srdhm(wrap32(x * (1 << left_shift)), multiplier)


def sat_round_mul_pot(x: int, exponent: int) -> int:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` on int32."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return wrap32(x << exponent)


def rescale(x: int, src_integer_bits: int, dst_integer_bits: int) -> int:
    """gemmlowp ``Rescale<dst>(FixedPoint<int32, src>)`` on the raw value."""
    return sat_round_mul_pot(x, src_integer_bits - dst_integer_bits)


def rounding_half_sum(a: int, b: int) -> int:
    """gemmlowp ``RoundingHalfSum`` on int32."""
    s = a + b
    return wrap32(_trunc_div(s + (1 if s >= 0 else -1), 2))


# ----------------------------------------------------------------------------- fixed point


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = wrap32(a + (1 << 28))  # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = sat_round_mul_pot(x4, -2)
    poly = sat_round_mul_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_EXP_BARREL = (
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    """gemmlowp ``exp_on_negative_values``: input Q(integer_bits), a <= 0; result Q0.31."""
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    mask = one_quarter - 1
    a_mod_q_minus_q = wrap32((a & mask) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_q_minus_q, integer_bits, 0)
    )
    remainder = wrap32(a_mod_q_minus_q - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent and remainder & (1 << (frac + exponent)):
            result = srdhm(result, multiplier)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _newton_reciprocal_f2(half_denominator: int) -> int:
    """The shared Newton-Raphson loop of gemmlowp's 1/(1+x) and (1-x)/(1+x); result Q2.29."""
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))  # 48/17 - 32/17 * d
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = wrap32((1 << 29) - half_denominator_times_x)
        x = wrap32(x + rescale(srdhm(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: Q0.31 in and out."""
    x = _newton_reciprocal_f2(rounding_half_sum(a, INT32_MAX))
    return rescale(x, 1, 0)  # ExactMulByPot<-1> then Rescale<0>


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1``: Q0.31 in and out."""
    x = _newton_reciprocal_f2(rounding_half_sum(a, INT32_MAX))
    return rescale(wrap32(x - (1 << 29)), 2, 0)


def fixed_logistic(a: int, integer_bits: int) -> int:
    """gemmlowp ``logistic`` of a Q(integer_bits) value; result Q0.31."""
    if a == 0:
        return 1 << 30
    abs_input = a if a > 0 else wrap32(-a)
    positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap32(-abs_input), integer_bits)
    )
    return positive if a > 0 else wrap32(INT32_MAX - positive)


def fixed_tanh(a: int, integer_bits: int) -> int:
    """gemmlowp ``tanh`` of a Q(integer_bits) value; result Q0.31."""
    if a == 0:
        return 0
    n = a if a < 0 else wrap32(-a)
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return wrap32(-t) if a < 0 else t


def get_reciprocal(x: int, x_integer_digits: int) -> tuple[int, int]:
    """TFLite ``GetReciprocal``: returns (Q0.31 reciprocal scale, num_bits_over_unit)."""
    u = x & 0xFFFFFFFF
    headroom_plus_one = 32 - u.bit_length() if u else 32
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap32(((u << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


# ----------------------------------------------------------------------------- Prepare-time


def float32(x: float) -> float:
    """Round to float32 (returned as a Python float, exactly representable)."""
    return float(np.float32(x))


def _f32_div(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float32(a) / np.float32(b))


def quantize_float_to(value: float, scale: float, zero_point: int) -> int:
    """TFLite kernel_util ``Quantize``: ``zp + (int)TfLiteRound(f / scale)`` in float32."""
    return zero_point + int(round_half_away(_f32_div(value, scale)))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for int8 outputs."""
    qmin, qmax = -128, 127
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_float_to(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (
            max(qmin, quantize_float_to(0.0, scale, zero_point)),
            min(qmax, quantize_float_to(6.0, scale, zero_point)),
        )
    if activation == "RELU_N1_TO_1":
        return (
            max(qmin, quantize_float_to(-1.0, scale, zero_point)),
            min(qmax, quantize_float_to(1.0, scale, zero_point)),
        )
    raise FirmwareExportError(f"fused activation {activation} is not supported for int8")


def conv_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> float:
    """Per-channel conv / FC effective scale (TFLite ``PopulateConvolutionQuantizationParams``):
    ``double(in) * double(filter) / double(out)``."""
    return input_scale * filter_scale / output_scale


def fc_per_tensor_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> float:
    """Per-tensor FC effective scale (TFLite ``GetQuantizedConvolutionMultipler``): the
    input x filter product is taken in float32 before widening to double."""
    return float(np.float32(np.float32(input_scale) * np.float32(filter_scale))) / output_scale


def calculate_input_radius(
    input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31
) -> int:
    """TFLite ``CalculateInputRadius`` (double precision, floored)."""
    max_input_rescaled = (
        1.0
        * ((1 << input_integer_bits) - 1)
        * float(1 << (total_signed_bits - input_integer_bits))
        / float(1 << input_left_shift)
    )
    return math.floor(max_input_rescaled)


@dataclass(frozen=True)
class SigmoidParams:
    """Prepare-time constants of TFLM's int8 LOGISTIC / TANH (4 input integer bits)."""

    input_zero_point: int
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int


def sigmoid_params(input_scale: float, input_zero_point: int) -> SigmoidParams:
    """``CalculateArithmeticOpDataLogistic`` / TANH ``CalculateArithmeticOpData`` for int8."""
    real = input_scale * float(1 << (31 - 4))
    q, left_shift = math.frexp(real)
    multiplier = int(round_half_away(q * float(1 << 31)))
    if multiplier > INT32_MAX:
        raise FirmwareExportError(
            f"input scale {input_scale!r} overflows the int8 logistic/tanh multiplier"
        )
    radius = calculate_input_radius(4, left_shift, 31)
    return SigmoidParams(input_zero_point, multiplier, left_shift, radius)


def logistic_int8(x: int, p: SigmoidParams) -> int:
    """TFLM ``reference_integer_ops::Logistic`` on one int8 value (output zp -128)."""
    inp = x - p.input_zero_point
    if inp <= -p.input_range_radius:
        return -128
    if inp >= p.input_range_radius:
        return 127
    in_q4 = mbqm(inp, p.input_multiplier, p.input_left_shift)
    out = rdbpot(fixed_logistic(in_q4, 4), 31 - 8) - 128
    return min(max(out, -128), 127)


def tanh_int8(x: int, p: SigmoidParams) -> int:
    """TFLM ``reference_integer_ops::Tanh`` on one int8 value (output zp 0)."""
    inp = x - p.input_zero_point
    if inp <= -p.input_range_radius:
        return -128
    if inp >= p.input_range_radius:
        return 127
    in_q4 = mbqm(inp, p.input_multiplier, p.input_left_shift)
    out = rdbpot(fixed_tanh(in_q4, 4), 31 - 7)
    return min(max(out, -128), 127)


def relu_int8_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> list[int]:
    """TFLM int8 RELU (``ReluQuantized``): requantize, then clamp at the output zero point."""
    mult, shift = quantize_multiplier(in_scale / out_scale)
    act_min, act_max = activation_range("RELU", out_scale, out_zp)
    table = []
    for x in range(-128, 128):
        v = out_zp + mbqm(x - in_zp, mult, shift)
        table.append(min(max(v, act_min), act_max))
    return table


def relu6_int8_table(in_scale: float, in_zp: int) -> list[int]:
    """TFLM int8 RELU6: clamp to [zero, six] in the *input* quantization."""
    lo, hi = activation_range("RELU6", in_scale, in_zp)
    return [min(max(x, lo), hi) for x in range(-128, 128)]


def requantize_int8_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> list[int]:
    """TFLM int8 -> int8 QUANTIZE (``Requantize``)."""
    mult, shift = quantize_multiplier(in_scale / out_scale)
    return [min(max(mbqm(x - in_zp, mult, shift) + out_zp, -128), 127) for x in range(-128, 128)]


@dataclass(frozen=True)
class SoftmaxParams:
    """Prepare-time constants of TFLM's int8 SOFTMAX (5 integer bits for scaled diffs)."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_params(beta: float, input_scale: float) -> SoftmaxParams:
    """``CalculateSoftmaxParams`` / ``PreprocessSoftmaxScaling`` for int8 input."""
    real = min(beta * input_scale * float(1 << (31 - 5)), float((1 << 31) - 1))
    if not real > 1.0:
        raise FirmwareExportError(
            f"softmax beta * input scale ({beta!r} * {input_scale!r}) is "
            "too small for TFLM's int8 softmax"
        )
    mult, left_shift = quantize_multiplier(real)
    diff_min = -calculate_input_radius(5, left_shift, 31)
    return SoftmaxParams(mult, left_shift, diff_min)


def softmax_exp_table(p: SoftmaxParams) -> list[int]:
    """exp(beta * scale * (x - max)) in Q0.31 for ``x - max = 0, -1, ..., -255``.

    Entries whose difference is below ``diff_min`` are 0: TFLM skips them in the sum and
    writes -128, which is exactly what a zero exp gives downstream.
    """
    table = []
    for d in range(256):
        diff = -d
        if diff >= p.diff_min:
            rescaled = mbqm_greater_than_one(diff, p.input_multiplier, p.input_left_shift)
            table.append(exp_on_negative_values(rescaled, 5))
        else:
            table.append(0)
    return table


def softmax_int8(row: list[int], exp_table: list[int]) -> list[int]:
    """TFLM int8 -> int8 SOFTMAX of one row, from the exp table (reference for the C code)."""
    max_in_row = max(row)
    exps = [exp_table[max_in_row - x] for x in row]
    total = 0
    for e in exps:
        total = wrap32(total + rescale(e, 0, 12))
    shifted_scale, num_bits_over_unit = get_reciprocal(total, 12)
    exponent = num_bits_over_unit + 31 - 8
    out = []
    for e in exps:
        v = rdbpot(srdhm(shifted_scale, e), exponent) - 128
        out.append(min(max(v, -128), 127))
    return out
