"""The *tile* convolution: stride-1 CONV_2D computed 2x2 outputs at a time from int16 pairs.

The engine's fast convolution (``algo == "tile"`` in the plan) works on blocks of 2x2
convolution outputs, which with the fused 2x2/2 pooling of LeNet are exactly the pooling
windows. Its inner product runs over *pairs* of taps, so that one ``SMLAD`` (Cortex-M4/M7 DSP
extension) or one ``PMADDWD`` lane (x86) does two multiply-accumulates:

* rows ``ky`` and ``ky + 1`` of the kernel are paired vertically, tap by tap
  (``(ky, kx)`` with ``(ky + 1, kx)``) for ``ky = 0, 2, 4, ...``;
* when the kernel height is odd, its last row is paired horizontally (``(ky, kx)`` with
  ``(ky, kx + 1)`` for ``kx = 0, 2, ...``); an odd width leaves one tap alone, paired with
  a zero weight.

A 5x5 kernel is 13 pairs (26 slots for 25 taps). The input values of one pair of taps for
the four outputs of a block sit in a small *tile* of 32-bit words, each holding two int16
values (low half: first tap, high half: second tap):

* tile row ``r < kv`` (``kv = 2 * (kh // 2)``, the vertically paired rows):
  ``word[j] = (in(y0 + r, x0 + j), in(y0 + r + 1, x0 + j))``
* tile row ``r >= kv`` (only for odd ``kh``; two rows):
  ``word[j] = (in(y0 + r, x0 + j), in(y0 + r, x0 + j + 1))``

where ``(y0, x0)`` is the input position of the block's top-left tap (``in`` returns the
input zero point outside the image, which is exact because the bias has
``-input_zero_point * sum(weights)`` folded in). The pair at tile row ``r`` and column ``c``
then reads ``word[r][c]`` for the top-left output, ``word[r][c + 1]`` for the top-right one and
row ``r + 1`` for the bottom ones. Adjacent words are loaded two at a time (``LDRD``) and
each word serves two pairs of taps, so one ``SMLAD`` needs about 0.5 loads.

A tile covers ``windows`` blocks side by side (a *strip*); its rows are
``2 * windows + kw - 1`` words wide. Weights are int16 pairs in the same order, doubled
(the accumulator holds twice the TFLM accumulator, which turns gemmlowp's rounding doubling
high multiply into one ``SMMULR``); the bias is doubled too.

This module knows the geometry and writes the straight-line C of one block (the per-layer
code the kernel template includes); it never looks at a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: LDRD's immediate offset reaches 1020 bytes: tiles and weight runs beyond that use a new base.
LDRD_MAX_WORDS = 255


@dataclass(frozen=True)
class Pair:
    """Two taps that share one 32-bit word: ``low`` and ``high`` are ``(ky, kx)``; ``high``
    is None for the lone tap of an odd row (its weight is zero)."""

    row: int  # tile row of the top outputs (the bottom ones use row + 1)
    col: int  # tile column of the left outputs (the right ones use col + 1)
    low: tuple[int, int]
    high: tuple[int, int] | None


@dataclass(frozen=True)
class TileShape:
    kh: int
    kw: int

    @property
    def kv(self) -> int:
        """Kernel rows paired vertically (and tile rows that hold vertical pairs)."""
        return 2 * (self.kh // 2)

    @property
    def rows(self) -> int:
        """Tile rows: the vertical-pair rows, plus two horizontal-pair rows for odd heights."""
        return self.kv + 2 if self.kh % 2 else self.kv

    def vertical(self, r: int) -> bool:
        return r < self.kv

    def width(self, windows: int) -> int:
        """Words per tile row for ``windows`` blocks side by side."""
        return 2 * windows + self.kw - 1

    def pairs(self) -> list[Pair]:
        out: list[Pair] = []
        for ky in range(0, self.kv, 2):
            out += [Pair(ky, kx, (ky, kx), (ky + 1, kx)) for kx in range(self.kw)]
        if self.kh % 2:
            ky = self.kh - 1
            for kx in range(0, self.kw, 2):
                high = (ky, kx + 1) if kx + 1 < self.kw else None
                out.append(Pair(self.kv, kx, (ky, kx), high))
        return out

    def words(self) -> list[tuple[int, int]]:
        """Every (tile row, column) word one block reads, in the order the block reads them."""
        seen: list[tuple[int, int]] = []
        for p in self.pairs():
            for w in ((p.row, p.col), (p.row, p.col + 1), (p.row + 1, p.col),
                      (p.row + 1, p.col + 1)):  # fmt: skip
                if w not in seen:
                    seen.append(w)
        return seen


def pack_pairs(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """int32 words with ``low`` in bits 0..15 and ``high`` in bits 16..31 (both int16)."""
    lo = low.astype(np.int64) & 0xFFFF
    hi = high.astype(np.int64) & 0xFFFF
    word = lo | (hi << 16)
    return (((word + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)).astype(np.int32)


def pair_weights(shape: TileShape, w: np.ndarray, channel: int, in_channel: int) -> np.ndarray:
    """The doubled int16 weight pairs of one (output channel, input channel): int32 words."""
    pairs = shape.pairs()
    low = np.array([2 * int(w[channel, p.low[0], p.low[1], in_channel]) for p in pairs])
    high = np.array(
        [2 * int(w[channel, p.high[0], p.high[1], in_channel]) if p.high else 0 for p in pairs]
    )
    return pack_pairs(low, high)


# ----------------------------------------------------------------------------- C code


def _word(r: int, c: int) -> str:
    return f"x{r}_{c}"


def block_dsp(shape: TileShape, width: int, prefix: str) -> list[str]:
    """Statements accumulating one block over one input channel, Cortex-M DSP path.

    In scope: ``const int32_t *t`` (the tile of that channel, at the block's first column),
    ``const int32_t *w`` (its weight pairs) and the accumulators ``a0`` (top-left), ``a1``
    (top-right), ``a2`` (bottom-left), ``a3`` (bottom-right). Words are loaded in pairs with
    ``<PREFIX>_LDRD`` as late as possible so that few stay live.
    """
    P = prefix.upper()
    lines: list[str] = []
    loaded: set[tuple[int, int]] = set()
    needed = set(shape.words())
    pairs = shape.pairs()

    def load(r: int, c: int) -> None:
        if (r, c) in loaded:
            return
        off = r * width + c
        if (r, c + 1) in needed and (r, c + 1) not in loaded and off + 1 <= LDRD_MAX_WORDS:
            lines.append(f"{P}_LDRD({_word(r, c)}, {_word(r, c + 1)}, t, {off});")
            loaded.update({(r, c), (r, c + 1)})
        else:
            lines.append(f"{_word(r, c)} = t[{off}];")
            loaded.add((r, c))

    declared = sorted(needed)
    lines.append("int32_t " + ", ".join(_word(r, c) for r, c in declared) + ";")
    lines.append("int32_t " + ", ".join(f"w{j}" for j in range(len(pairs))) + ";")
    for j, p in enumerate(pairs):
        if j % 2 == 0:
            if j + 1 < len(pairs) and j + 1 <= LDRD_MAX_WORDS:
                lines.append(f"{P}_LDRD(w{j}, w{j + 1}, w, {j});")
            else:
                lines.append(f"w{j} = w[{j}];")
        for r, c in ((p.row, p.col), (p.row + 1, p.col), (p.row, p.col + 1),
                     (p.row + 1, p.col + 1)):  # fmt: skip
            load(r, c)
        lines += [
            f"a0 = __smlad({_word(p.row, p.col)}, w{j}, a0);",
            f"a1 = __smlad({_word(p.row, p.col + 1)}, w{j}, a1);",
            f"a2 = __smlad({_word(p.row + 1, p.col)}, w{j}, a2);",
            f"a3 = __smlad({_word(p.row + 1, p.col + 1)}, w{j}, a3);",
        ]
    return lines


def block_portable(shape: TileShape, width: int) -> list[str]:
    """The same block in portable C: int16 halves split with shifts, 32-bit products."""
    lines: list[str] = []
    loaded: set[tuple[int, int]] = set()
    pairs = shape.pairs()
    high_used = {
        w
        for p in pairs
        if p.high is not None
        for w in ((p.row, p.col), (p.row, p.col + 1), (p.row + 1, p.col), (p.row + 1, p.col + 1))
    }
    for j, p in enumerate(pairs):
        wl, wh = f"w{j}l", f"w{j}h"
        if p.high is None:
            lines.append(f"const int32_t {wl} = (int32_t)(int16_t)w[{j}];")
        else:
            lines.append(f"const int32_t {wl} = (int32_t)(int16_t)w[{j}], {wh} = w[{j}] >> 16;")
        for acc, (r, c) in enumerate(
            ((p.row, p.col), (p.row, p.col + 1), (p.row + 1, p.col), (p.row + 1, p.col + 1))
        ):
            x = _word(r, c)
            if (r, c) not in loaded:
                loaded.add((r, c))
                off = r * width + c
                if (r, c) in high_used:
                    lines.append(
                        f"const int32_t {x}l = (int32_t)(int16_t)t[{off}], {x}h = t[{off}] >> 16;"
                    )
                else:
                    lines.append(f"const int32_t {x}l = (int32_t)(int16_t)t[{off}];")
            lines.append(f"a{acc} += {x}l * {wl};")
            if p.high is not None:
                lines.append(f"a{acc} += {x}h * {wh};")
    return lines


# --------------------------------------------------------- portable C, packed tile
#
# Without the DSP extension the portable path reads another tile, filled from the same input
# (it has ``kh`` rows, never more than the pair tile's): one word per input position and
# kernel row, ``packed(r, j) = (in(y0 + r, x0 + j), in(y0 + r + 1, x0 + j))``, the two int8
# values ``PACK_SHIFT`` bits apart (``lo + hi * 2^PACK_SHIFT``). One 32 x 32 -> 64 bit
# multiply-accumulate (SMLAL on ARMv7-M) of such a word by one weight then does two MACs: the
# top and the bottom output of a column of the block. Exact while the low sum stays within
# ``PACK_SHIFT - 1`` bits (``packed_fits``, checked at export time; otherwise a layer keeps
# the pair tile). ARMv6-M has no such multiply: the same tile with the low value in the low 24
# bits (``hi << 24 | (lo & 0xFFFFFF)``) and 32-bit products. ASR splits off the high value. The
# low one needs no split where ``low_lane_fits``: MULS of the whole word by a weight adds the
# low product plus a multiple of 2^24, so the low 24 bits of the sum are exact and a sign
# extension at the end recovers it (otherwise SXTB splits it, one instruction more per MAC).

#: Bits between the two values of a packed word (hi * 2^23 + lo never overflows an int32).
PACK_SHIFT = 23


def _channel_weight_sums(weights: np.ndarray, map_start: list[int]) -> list[int]:
    """Each output channel's sum of |doubled weight| over all its (channel, map) entries."""
    w = weights.astype(np.int64)
    lo = ((w & 0xFFFF) ^ 0x8000) - 0x8000
    hi = w >> 16
    per_entry = (np.abs(lo) + np.abs(hi)).sum(axis=1)
    return [
        int(per_entry[map_start[oc] : map_start[oc + 1]].sum()) for oc in range(len(map_start) - 1)
    ]


def packed_fits(weights: np.ndarray, map_start: list[int]) -> bool:
    """True when every output channel's low sum (int8 inputs, |x| <= 128, times the doubled
    weights of all its (channel, map) entries) stays within PACK_SHIFT - 1 bits."""
    return all(
        128 * total < 1 << (PACK_SHIFT - 1) for total in _channel_weight_sums(weights, map_start)
    )


#: Bits of the low lane of an ARMv6-M packed word (its sums are kept modulo 2^LOW_LANE).
LOW_LANE = 24


def low_lane_fits(weights: np.ndarray, map_start: list[int], bias: list[int]) -> bool:
    """True when every output channel's low-lane sum (its doubled bias plus int8 inputs,
    |x| <= 128, times the doubled weights of all its entries) fits LOW_LANE signed bits, so
    that the ARMv6-M kernel may keep it modulo 2^LOW_LANE and sign-extend it at the end."""
    sums = _channel_weight_sums(weights, map_start)
    return all(
        abs(int(b)) + 128 * total < 1 << (LOW_LANE - 1) for b, total in zip(bias, sums, strict=True)
    )


def tap_order(shape: TileShape) -> list[tuple[int, int, str]]:
    """Every tap ``(ky, kx)`` with the C expression of its doubled weight, pair by pair (the
    two halves of a weight word next to each other, so that it is loaded once)."""
    out: list[tuple[int, int, str]] = []
    for j, p in enumerate(shape.pairs()):
        out.append((*p.low, f"(int32_t)(int16_t)w[{j}]"))
        if p.high is not None:
            out.append((*p.high, f"(w[{j}] >> 16)"))
    return out


def block_packed64(shape: TileShape, width: int, prefix: str) -> list[str]:
    """One block over one input channel, packed tile, 64-bit products: ``pl`` accumulates the
    left column of the block (top output low, bottom output high), ``pr`` the right one.
    In scope: ``t`` (the packed tile at the block's first column) and ``w``; each weight is
    read as one int16 (``<prefix>_half16``)."""
    slot: dict[tuple[int, int], int] = {}
    for j, p in enumerate(shape.pairs()):
        slot[p.low] = 2 * j
        if p.high is not None:
            slot[p.high] = 2 * j + 1
    lines: list[str] = []
    for ky, kx, _ in tap_order(shape):
        off = ky * width + kx
        lines += [
            f"{{ const int32_t wk = {prefix}_half16(w, {slot[(ky, kx)]});",
            f"  pl += (int64_t)t[{off}] * wk;",
            f"  pr += (int64_t)t[{off + 1}] * wk; }}",
        ]
    return lines


#: The largest offset of a Thumb-1 LDR (a 5-bit word immediate).
LDR_REACH = 124


def block_packed_v6m(
    shape: TileShape, width: int, prefix: str, low_direct: bool = False
) -> list[str]:
    """The same block for ARMv6-M (no 64-bit multiply): 32-bit products into ``a0``..``a3``.

    With GCC (not at -Os), one inline-assembly statement: the accumulators in r8-r12/lr (which
    ADD reaches), every operand of MULS in r0-r7, a row pointer stepping down the tile, the
    words of one row loaded once each (the pointer steps down only where LDR's offsets do not
    reach the next row). A packed word's high value is split off with ASR. With
    ``low_direct`` (``low_lane_fits``) the low one is not split: the whole word is multiplied,
    in place since each word's last use as a left word and each weight's last use come last,
    and ``a0``, ``a1`` are exact modulo 2^LOW_LANE (the caller sign-extends them): 13
    instructions per tap of four MACs. Otherwise SXTB splits it: 15 per tap. Without the
    assembly (or when the offsets do not fit LDR's 5-bit immediates) ``<PREFIX>_MAC4``,
    which splits both values, so that ``a0``, ``a1`` are exact either way."""
    P = prefix.upper()
    taps = {(ky, kx): weight for ky, kx, weight in tap_order(shape)}
    fallback: list[str] = []
    for ky, kx, weight in tap_order(shape):
        off = ky * width + kx
        fallback += [
            f"{{ const int32_t wk = {weight};",
            f"  const int32_t l = t[{off}], r = t[{off + 1}];",
            f"  {P}_MAC4(a0, a1, a2, a3, l, r, wk); }}",
        ]
    if 4 * len(shape.pairs()) > LDR_REACH + 4 or 4 * shape.kw > LDR_REACH:
        return fallback
    slot: dict[tuple[int, int], tuple[int, bool]] = {}
    for j, p in enumerate(shape.pairs()):
        slot[p.low] = (j, False)
        if p.high is not None:
            slot[p.high] = (j, True)
    asm: list[str] = []
    base = 0  # bytes from t to rb
    for ky in range(shape.kh):
        row = 4 * ky * width
        if row + 4 * shape.kw - base > LDR_REACH:  # step rb only when LDR cannot reach
            step = row - base
            while step > 0:
                asm.append(f"adds %[rb], #{min(step, 255)}")
                step -= min(step, 255)
            base = row
        cur, nxt = "xa", "xb"
        asm.append(f"ldr %[{cur}], [%[rb], #{row - base}]")
        for kx in range(shape.kw):
            j, high = slot[(ky, kx)]
            assert taps[(ky, kx)]
            asm.append(f"ldr %[k], [%[w], #{4 * j}]")
            asm.append("asrs %[k], %[k], #16" if high else "sxth %[k], %[k]")
            asm.append(f"ldr %[{nxt}], [%[rb], #{row - base + 4 * (kx + 1)}]")
            if low_direct:
                # cur is not read again (the next tap's left word is nxt), nor is the weight
                # after its last product: both products of the low values are made in place.
                asm += [
                    f"asrs %[m], %[{cur}], #24", "muls %[m], %[k]", "add %[q2], %[m]",
                    f"asrs %[m], %[{nxt}], #24", "muls %[m], %[k]", "add %[q3], %[m]",
                    f"muls %[{cur}], %[k]", f"add %[q0], %[{cur}]",
                    f"muls %[k], %[{nxt}]", "add %[q1], %[k]",
                ]  # fmt: skip
            else:
                for src, op, acc in (
                    (cur, "sxtb %[m], %[{}]", "q0"),
                    (cur, "asrs %[m], %[{}], #24", "q2"),
                    (nxt, "sxtb %[m], %[{}]", "q1"),
                    (nxt, "asrs %[m], %[{}], #24", "q3"),
                ):
                    asm += [op.format(src), "muls %[m], %[k]", f"add %[{acc}], %[m]"]
            cur, nxt = nxt, cur
    lines = [
        "#if defined(__GNUC__) && !defined(__OPTIMIZE_SIZE__)",  # -Os: no r8-r11 in Thumb-1
        "{",
        "    const int32_t *rb = t;",
        "    int32_t xa, xb, wt, pr;",
    ]
    lines.append('    __asm__(".syntax unified\\n\\t" /* GCC: divided syntax for Thumb-1 asm */')
    lines += [f'            "{a}\\n\\t"' for a in asm]
    lines += [
        '            : [q0] "+h"(a0), [q1] "+h"(a1), [q2] "+h"(a2), [q3] "+h"(a3),',
        '              [rb] "+l"(rb), [xa] "=&l"(xa), [xb] "=&l"(xb),',
        '              [k] "=&l"(wt), [m] "=&l"(pr)',
        '            : [w] "l"(w)',
        '            : "cc", "memory");',
        "}",
        "#else",
        *fallback,
        "#endif",
    ]
    return lines


def fill_packed(shape: TileShape, width: int, prefix: str, value: list[str]) -> list[str]:
    """Statements filling one column of the packed tile from ``value`` (the C expressions of
    the column's ``kh + 1`` inputs). In scope: ``col`` (the column's word of row 0)."""
    lines = [f"const int32_t v{r} = {value[r]};" for r in range(shape.kh + 1)]
    lines += [f"col[{r * width}] = {prefix}_pack24(v{r}, v{r + 1});" for r in range(shape.kh)]
    return lines


@dataclass(frozen=True)
class Simd:
    """How the x86 code of a tile layer spells one vector width (AVX2: 8 lanes, AVX-512: 16)."""

    lanes: int
    prefix: str

    @property
    def T(self) -> str:  # the C type
        return f"__m{32 * self.lanes}i"

    @property
    def F(self) -> str:  # the intrinsic prefix
        return f"_mm{32 * self.lanes}"

    @property
    def mask_t(self) -> str:
        return "__m256i" if self.lanes == 8 else "__mmask16"

    @property
    def sat(self) -> str:
        return f"sat8x{self.lanes}"

    @property
    def requant(self) -> str:
        return "requantize_fast8" if self.lanes == 8 else "requantize_fast16"

    @property
    def lookup(self) -> str:
        return f"lookup{self.lanes}"

    @property
    def store(self) -> str:
        return f"store{self.lanes}"

    def mask_n(self, n: str) -> str:
        """The first n lanes (n a C expression, any value)."""
        if self.lanes == 8:
            return (
                f"_mm256_cmpgt_epi32(_mm256_set1_epi32({n}), "
                "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))"
            )
        return f"{self.prefix}_mask16({n})"

    def mask(self, n: int) -> str:
        return self.mask_n(str(n))

    def loadu(self, ptr: str) -> str:
        if self.lanes == 8:
            return f"_mm256_loadu_si256((const __m256i *)(const void *)({ptr}))"
        return f"_mm512_loadu_si512((const void *)({ptr}))"

    def maskload(self, ptr: str, mask: str) -> str:
        if self.lanes == 8:
            return f"_mm256_maskload_epi32((const int *)(const void *){ptr}, {mask})"
        return f"_mm512_maskz_loadu_epi32({mask}, (const void *){ptr})"

    def gather4(self, array: str, first: int, field: int, mask: str) -> str:
        """Lanes i < n of ``array[4 * (first + i) + field]`` (zero in the others)."""
        if self.lanes == 8:
            idx = f"_mm256_setr_epi32({', '.join(str(4 * i + field) for i in range(8))})"
            return (
                f"_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), "
                f"(const int *)(const void *)({array} + {4 * first}), {idx}, {mask}, 4)"
            )
        idx = f"_mm512_setr_epi32({', '.join(str(4 * i + field) for i in range(16))})"
        return (
            f"_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), {mask}, {idx}, "
            f"(const void *)({array} + {4 * first}), 4)"
        )

    def swap_pairs(self, v: str) -> str:
        if self.lanes == 8:
            return f"_mm256_shuffle_epi32({v}, 0xB1)"
        return f"_mm512_shuffle_epi32({v}, (_MM_PERM_ENUM)0xB1)"

    def store_even(self, ptr: str, v: str) -> str:
        """Store the even lanes of v as int32 at ptr."""
        if self.lanes == 8:
            idx = "_mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)"
            return (
                f"_mm_storeu_si128((__m128i *)(void *)({ptr}), "
                f"_mm256_castsi256_si128(_mm256_permutevar8x32_epi32({v}, {idx})))"
            )
        idx = "_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14)"
        return (
            f"_mm256_storeu_si256((__m256i *)(void *)({ptr}), "
            f"_mm512_castsi512_si256(_mm512_permutexvar_epi32({idx}, {v})))"
        )


def x86_group(vectors: int, lanes: int = 8) -> int:
    """Positions of a 2x2 block computed together on x86 (the accumulators must fit the 16
    ymm registers of AVX2, or the 32 of AVX-512)."""
    regs = 16 if lanes == 8 else 32
    for group in (4, 2):
        if group * vectors + vectors + 1 <= regs - 2:
            return group
    return 1


def block_x86(
    shape: TileShape, width: int, vectors: int, lanes: int, simd: Simd, channels: int
) -> list[list[str]]:
    """One input channel for a group of positions of a 2x2 block, x86: the output channels
    are the lanes (``vectors`` vectors of ``simd.lanes``). One list of statements per group.

    The x86 tile keeps the input channels innermost (word (r, j, ch) at
    ``(r * width + j) * channels + ch``). In scope: ``const int32_t *t`` (the tile at the
    block's first word of that channel), ``const int32_t *w`` (that channel's weight pairs,
    [pairs][lanes]) and the accumulators ``a<position>_<vector>``. An empty asm after each
    pair keeps the compiler from re-associating the sums into a tree that spills.
    """
    group = x86_group(vectors, simd.lanes)
    P = simd.prefix.upper()
    F = simd.F
    out = []
    for g in range(4 // group):
        lines: list[str] = []
        for j, p in enumerate(shape.pairs()):
            off = (p.row * width + p.col) * channels
            lines.append("{")
            for v in range(vectors):
                w = simd.loadu(f"w + {j * lanes + simd.lanes * v}")
                lines.append(f"    const {simd.T} w{v} = {w};")
            for q in range(group):
                pos = g * group + q
                poff = off + ((pos // 2) * width + pos % 2) * channels
                lines.append(f"    const {simd.T} x{q} = {F}_set1_epi32(t[{poff}]);")
                for v in range(vectors):
                    lines.append(
                        f"    a{q}_{v} = {F}_add_epi32(a{q}_{v}, {F}_madd_epi16(x{q}, w{v}));"
                    )
            for q in range(group):
                for v in range(vectors):
                    lines.append(f"    {P}_KEEP(a{q}_{v});")
            lines.append("}")
        out.append(lines)
    return out


def rows_x86(shape: TileShape, width: int, vectors: int, simd: Simd) -> list[str]:
    """One output channel over a strip of one input channel, x86: the positions of the strip
    are the lanes, ``vectors`` vectors per row of outputs (the last one masked with
    ``last``). In scope: ``tile`` (the strip's tile), ``w`` (the channel's weight pairs) and
    the accumulators ``t<q>`` (top outputs) and ``u<q>`` (bottom outputs)."""
    P = simd.prefix.upper()
    F = simd.F
    lines: list[str] = []
    for j, p in enumerate(shape.pairs()):
        lines.append("{")
        lines.append(f"    const {simd.T} w{j} = {F}_set1_epi32(w[{j}]);")
        for acc, row in (("t", p.row), ("u", p.row + 1)):
            for q in range(vectors):
                off = row * width + p.col + simd.lanes * q
                if q == vectors - 1:
                    x = simd.maskload(f"(tile + {off})", "last")
                else:
                    x = simd.loadu(f"tile + {off}")
                lines.append(f"    {acc}{q} = {F}_add_epi32({acc}{q}, {F}_madd_epi16({x}, w{j}));")
        lines += [f"    {P}_KEEP({acc}{q});" for acc in "tu" for q in range(vectors)]
        lines.append("}")
    return lines
