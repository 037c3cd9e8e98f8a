"""The portable path's packed tile (firmware_export.tile): every tap read once with its own
weight, the exactness bound, and the packed sums against a direct convolution in Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_export import tile
from tests.support.kernel_models import MODELS, render_standalone


@pytest.mark.parametrize("kh,kw", [(1, 1), (2, 2), (3, 3), (4, 3), (5, 5), (7, 7)])
def test_tap_order_reads_every_tap_once_with_its_weight(kh: int, kw: int) -> None:
    shape = tile.TileShape(kh, kw)
    rng = np.random.default_rng(kh * 10 + kw)
    w = rng.integers(-127, 128, size=(1, kh, kw, 1))
    words = tile.pair_weights(shape, w, 0, 0)
    order = tile.tap_order(shape)
    assert sorted((ky, kx) for ky, kx, _ in order) == [
        (ky, kx) for ky in range(kh) for kx in range(kw)
    ]
    for ky, kx, expr in order:
        j = int(expr.split("w[")[1].split("]")[0])
        half = int(words[j]) >> 16 if ">> 16" in expr else int(np.int16(words[j] & 0xFFFF))
        assert half == 2 * int(w[0, ky, kx, 0])


def test_packed_fits_is_the_low_sum_bound() -> None:
    # one output channel, 13 pair words: sum |2w| = 2 * 25 * 127 = 6350 -> fits
    shape = tile.TileShape(5, 5)
    full = np.full((1, 5, 5, 1), 127)
    words = tile.pair_weights(shape, full, 0, 0)[None, :]
    assert tile.packed_fits(words, [0, 1])
    # 6 maps of it: 128 * 6 * 6350 = 4,876,800 >= 2^22 -> does not fit
    assert not tile.packed_fits(np.repeat(words, 6, axis=0), [0, 6])
    # the same 6 entries spread over 6 output channels fit again
    assert tile.packed_fits(np.repeat(words, 6, axis=0), [0, 1, 2, 3, 4, 5, 6])


def pack64(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo.astype(np.int64) + hi.astype(np.int64) * (1 << tile.PACK_SHIFT)


def unpack(acc: int) -> tuple[int, int]:
    """What <p>_unpack_lo / <p>_unpack_hi compute."""
    u = (acc << (32 - tile.PACK_SHIFT)) & 0xFFFFFFFF
    lo = (u - (1 << 32) if u >= 1 << 31 else u) >> (32 - tile.PACK_SHIFT)
    return lo, (acc - lo) >> tile.PACK_SHIFT


@pytest.mark.parametrize("seed", range(20))
def test_packed_sums_split_exactly_at_the_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 128
    # extreme inputs and weights at the edge of the bound: 128 * sum|w| just below 2^22
    w = rng.choice([-254, 254], size=n)
    w[: n - 128] = 0
    w = w * ((1 << 22) - 1) // (128 * np.abs(w).sum())
    lo = rng.choice([-128, 127], size=n)
    hi = rng.integers(-128, 128, size=n)
    words = pack64(lo, hi)
    assert np.all(np.abs(words) < 1 << 31)  # an int32, as in C
    acc = int(sum(int(x) * int(k) for x, k in zip(words, w, strict=True)))
    assert unpack(acc) == (int(lo @ w), int(hi @ w))


def test_synthetic_models_cover_both_portable_tiles(tmp_path: Path) -> None:
    """model_h's convolution is beyond the packed tile's bound (it keeps the pair tile and the
    32-bit block, which the kernel tests then run), the other tile layers are within it."""
    fits = {}
    for name in ("e", "f", "h"):
        plan = render_standalone(MODELS[name](), tmp_path)
        for s in plan.steps:
            tp = getattr(s, "tile", None)
            if tp is not None:
                fits[(name, s.name)] = tile.packed_fits(tp.weights, tp.map_start)
        layers = (tmp_path / "lenet_layers.c").read_text()
        assert ("pl += " in layers) == any(v for (m, _), v in fits.items() if m == name)
    assert [v for (m, _), v in fits.items() if m == "h"] == [False, True]
    assert all(v for (m, _), v in fits.items() if m != "h")


def test_low_lane_fits_is_the_bias_plus_low_sum_bound() -> None:
    # one channel of 25 taps at 127: 128 * 6350 = 812,800; with the bias up to 2^23 - 1
    shape = tile.TileShape(5, 5)
    words = tile.pair_weights(shape, np.full((1, 5, 5, 1), 127), 0, 0)[None, :]
    edge = (1 << 23) - 1 - 128 * 6350
    assert tile.low_lane_fits(words, [0, 1], [edge])
    assert tile.low_lane_fits(words, [0, 1], [-edge])
    assert not tile.low_lane_fits(words, [0, 1], [edge + 1])
    assert not tile.low_lane_fits(words, [0, 1], [-edge - 1])


def pack_v6m(lo: int, hi: int) -> int:
    """<p>_pack24 on ARMv6-M, as the uint32 it stores."""
    return ((hi << 24) | (lo & 0xFFFFFF)) & 0xFFFFFFFF


@pytest.mark.parametrize("seed", range(20))
def test_low_lane_sums_are_exact_modulo_2_24_at_the_bound(seed: int) -> None:
    """What the ARMv6-M assembly does with low_lane_fits: MULS of each whole word by its
    weight, the sums modulo 2^32, then <p>_sext24: the bias plus the low products, exactly,
    with the bias and the extreme inputs at the bound."""
    rng = np.random.default_rng(seed)
    n = 150
    w = rng.choice([-254, 254], size=n)
    bias = int(rng.choice([-1, 1])) * ((1 << 23) - 1 - 128 * int(np.abs(w).sum()))
    # every product at its extreme, with the bias's sign: the sum is at the bound
    lo = np.where(np.sign(w) == np.sign(bias), 127, -128)
    hi = rng.integers(-128, 128, size=n)
    acc = bias
    for x, h, k in zip(lo, hi, w, strict=True):
        acc = (acc + pack_v6m(int(x), int(h)) * int(k)) & 0xFFFFFFFF
    u = (acc << 8) & 0xFFFFFFFF
    sext = (u - (1 << 32) if u >= 1 << 31 else u) >> 8
    assert sext == bias + int(lo @ w)
    # the high values, split with ASR, are exact whatever the low ones hold
    assert all((pack_v6m(int(x), int(h)) ^ 0x80000000) - 0x80000000 >> 24 == h
               for x, h in zip(lo, hi, strict=True))  # fmt: skip


def test_v6m_kernel_splits_the_low_values_only_beyond_the_bound(tmp_path: Path) -> None:
    """model_h's second convolution is beyond low_lane_fits: its ARMv6-M block splits the low
    values with SXTB; every other packed layer multiplies the whole word (no SXTB) and
    sign-extends the low sums."""
    for name in ("e", "f", "h"):
        plan = render_standalone(MODELS[name](), tmp_path)
        layers = (tmp_path / "lenet_layers.c").read_text()
        for s in plan.steps:
            tp = getattr(s, "tile", None)
            if tp is None or not tile.packed_fits(tp.weights, tp.map_start):
                continue
            body = layers.split(f"lenet_{s.name}_tile(const int8_t")[1].split("\n}\n")[0]
            direct = tile.low_lane_fits(tp.weights, tp.map_start, tp.bias)
            assert direct == (name != "h")
            assert ("sxtb %[m]" in body) == (not direct)
            assert ("lenet_sext24(a0)" in body) == direct


def test_one_strip_layers_slide_the_packed_tile_down(tmp_path: Path) -> None:
    """model_j's two convolutions have one strip per block row: their portable code refills
    only the last two packed rows after the first block row (<name>_vfill); layers with
    narrower strips do not have it."""
    for name, want in (("j", {"conv0", "conv1"}), ("e", set()), ("f", set())):
        plan = render_standalone(MODELS[name](), tmp_path)
        layers = (tmp_path / "lenet_layers.c").read_text()
        have = {s.name for s in plan.steps if f"lenet_{s.name}_tile_vfill(" in layers}
        assert have == want, name
