"""Small synthetic int8 models that reach every kernel path (random weights, chosen
quantization), shared by the host kernel tests (tests/export) and the Cortex-M ones (tests/mcu).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as s

from firmware_export.emit.standalone import StandaloneWriter
from firmware_export.plan import build_plan
from firmware_export.reader import load_graph
from tests.support.tflite_build import ModelBuilder

RNG_SEED = 1234


def conv_opts(padding: str, stride: int, dilation: int = 1, act: str = "NONE") -> object:
    o = s.Conv2DOptionsT()
    o.padding = getattr(s.Padding, padding)
    o.strideH = o.strideW = stride
    o.dilationHFactor = o.dilationWFactor = dilation
    o.fusedActivationFunction = getattr(s.ActivationFunctionType, act)
    return o


def pool_opts(padding: str, size: int, stride: int, act: str = "NONE") -> object:
    o = s.Pool2DOptionsT()
    o.padding = getattr(s.Padding, padding)
    o.filterHeight = o.filterWidth = size
    o.strideH = o.strideW = stride
    o.fusedActivationFunction = getattr(s.ActivationFunctionType, act)
    return o


class Net:
    """A sequential int8 graph with random weights and plausible quantization."""

    def __init__(self, shape: list[int], seed: int) -> None:
        self.b = ModelBuilder()
        self.rng = np.random.default_rng(seed)
        self.scale, self.zp = 0.05, -3
        self.shape = shape
        self.x = self.b.tensor(shape, "INT8", self.scale, self.zp, name="input")
        self.t = self.x

    def _out(self, shape: list[int], scale: float | None = None, zp: int | None = None) -> int:
        scale = scale if scale is not None else float(self.rng.uniform(0.03, 0.12))
        zp = zp if zp is not None else int(self.rng.integers(-20, 20))
        t = self.b.tensor(shape, "INT8", scale, zp)
        self.t, self.shape, self.scale, self.zp = t, shape, scale, zp
        return t

    def conv(
        self,
        out_c: int,
        k: int,
        padding: str,
        stride: int,
        dilation: int = 1,
        act: str = "NONE",
        per_channel: bool = True,
        zero_maps: bool = False,
        out_scale: float | None = None,
        bias_boost: int = 0,
    ) -> None:
        _, h, w, c = self.shape
        wt = self.rng.integers(-127, 128, size=(out_c, k, k, c)).astype(np.int8)
        if zero_maps:
            wt[0, :, :, 0] = 0
            wt[1, :, :, 1:] = 0
        if per_channel:
            ws = [float(v) for v in self.rng.uniform(0.002, 0.01, size=out_c)]
        else:
            ws = [0.005]
        bias_scale = [self.scale * v for v in ws]
        wt_t = self.b.tensor([out_c, k, k, c], "INT8", ws, [0] * len(ws), data=wt)
        b = self.rng.integers(-3000, 3000, size=out_c).astype(np.int32)
        b[0] += bias_boost
        bias = self.b.tensor([out_c], "INT32", bias_scale, [0] * len(ws), data=b)
        eff = (k - 1) * dilation + 1
        oh = (h + stride - 1) // stride if padding == "SAME" else (h - eff + stride) // stride
        ow = (w + stride - 1) // stride if padding == "SAME" else (w - eff + stride) // stride
        src = self.t
        y = self._out([1, oh, ow, out_c], out_scale)
        self.b.op(
            "CONV_2D",
            [src, wt_t, bias],
            [y],
            conv_opts(padding, stride, dilation, act),
            "Conv2DOptions",
        )

    def pool(self, kind: str, size: int, stride: int, padding: str) -> None:
        _, h, w, c = self.shape
        oh = (h + stride - 1) // stride if padding == "SAME" else (h - size + stride) // stride
        ow = (w + stride - 1) // stride if padding == "SAME" else (w - size + stride) // stride
        src = self.t
        y = self._out([1, oh, ow, c], self.scale, self.zp)
        self.b.op(kind, [src], [y], pool_opts(padding, size, stride), "Pool2DOptions")

    def elementwise(self, kind: str) -> None:
        src = self.t
        if kind == "LOGISTIC":
            y = self._out(list(self.shape), 1 / 256, -128)
        elif kind == "TANH":
            y = self._out(list(self.shape), 1 / 128, 0)
        elif kind == "RELU6":
            y = self._out(list(self.shape), self.scale, self.zp)
        else:  # RELU, QUANTIZE: a new quantization
            y = self._out(list(self.shape))
        self.b.op(kind, [src], [y])

    def flatten_fc(
        self, n: int, act: str = "NONE", out_scale: float = 0.2, extreme: bool = False
    ) -> None:
        k = int(np.prod(self.shape))
        src = self.t
        shape_t = self.b.tensor([2], "INT32", data=np.array([1, k], np.int32))
        flat = self.b.tensor([1, k], "INT8", self.scale, self.zp)
        ro = s.ReshapeOptionsT()
        ro.newShape = [1, k]
        self.b.op("RESHAPE", [src, shape_t], [flat], ro, "ReshapeOptions")
        wt = self.rng.integers(-127, 128, size=(n, k)).astype(np.int8)
        if extreme:  # the largest sums of offset bytes (255 * 255 per MAC), and the smallest
            wt[0], wt[1] = 127, -127
        ws = 0.004
        w_t = self.b.tensor([n, k], "INT8", ws, 0, data=wt)
        bias = self.b.tensor(
            [n],
            "INT32",
            self.scale * ws,
            0,
            data=self.rng.integers(-2000, 2000, size=n).astype(np.int32),
        )
        self.t = flat
        y = self._out([1, n], out_scale, 0)
        fo = s.FullyConnectedOptionsT()
        fo.fusedActivationFunction = getattr(s.ActivationFunctionType, act)
        self.b.op("FULLY_CONNECTED", [flat, w_t, bias], [y], fo, "FullyConnectedOptions")

    def softmax(self) -> None:
        src = self.t
        y = self._out(list(self.shape), 1 / 256, -128)
        so = s.SoftmaxOptionsT()
        so.beta = 1.0
        self.b.op("SOFTMAX", [src], [y], so, "SoftmaxOptions")

    def build(self) -> bytes:
        return self.b.build([self.x], [self.t])


def model_a() -> bytes:
    """Stride 2 + SAME conv (RELU fused), overlapping SAME max pool (standalone), RELU6,
    overlapping average pool (standalone), FC, softmax."""
    n = Net([1, 11, 13, 3], RNG_SEED)
    n.conv(5, 3, "SAME", 2, act="RELU")
    n.pool("MAX_POOL_2D", 3, 2, "SAME")
    n.elementwise("RELU6")
    n.pool("AVERAGE_POOL_2D", 2, 1, "VALID")
    n.flatten_fc(7)
    n.softmax()
    return n.build()


def model_b() -> bytes:
    """Dilated VALID conv without pooling (tail blocks), a table chain TANH -> QUANTIZE,
    a per-tensor conv with all-zero input maps, fused SAME average pooling with partial
    windows (odd size), LOGISTIC after FC."""
    n = Net([1, 9, 10, 2], RNG_SEED + 1)
    n.conv(3, 3, "VALID", 1, dilation=2)  # 5x6 outputs: 30 positions, not a multiple of 4
    n.elementwise("TANH")
    n.elementwise("QUANTIZE")
    n.conv(4, 2, "SAME", 1, per_channel=False, zero_maps=True)
    n.elementwise("RELU")
    n.pool("AVERAGE_POOL_2D", 2, 2, "SAME")
    n.flatten_fc(6)
    n.elementwise("LOGISTIC")
    return n.build()


def model_c() -> bytes:
    """Standalone table ops at the start (on the read-only model input) and a conv whose
    output is the model output (no pooling, RELU6 fused)."""
    n = Net([1, 6, 6, 1], RNG_SEED + 2)
    n.elementwise("RELU")
    n.elementwise("LOGISTIC")
    n.conv(3, 3, "SAME", 1, act="RELU6")
    return n.build()


def model_d() -> bytes:
    """Pooling straight on the (signed, read-only) model input: SAME 3x3/2 average windows
    cover 4, 6 or 9 values, so the round-half-away-from-zero division is exercised on
    negative sums; then an overlapping max pool."""
    n = Net([1, 7, 8, 3], RNG_SEED + 3)
    n.pool("AVERAGE_POOL_2D", 3, 2, "SAME")
    n.pool("MAX_POOL_2D", 2, 1, "VALID")
    return n.build()


def model_e() -> bytes:
    """Tile convolutions: an even 4x4 kernel with SAME padding, RELU (a clamp table) and
    all-zero input maps (sparse channels) under a 2x2 max pool; then 20 output channels (three
    x86 vectors) with TANH under a 2x2 average pool that drops an odd last column."""
    n = Net([1, 12, 14, 3], RNG_SEED + 4)
    n.conv(5, 4, "SAME", 1, act="RELU", zero_maps=True)
    n.pool("MAX_POOL_2D", 2, 2, "VALID")
    n.conv(20, 3, "SAME", 1)
    n.elementwise("TANH")
    n.pool("AVERAGE_POOL_2D", 2, 2, "VALID")
    n.flatten_fc(5)
    return n.build()


def model_f() -> bytes:
    """Tile convolutions: one input channel with wide strips (the x86 path's positions as
    lanes) and LOGISTIC + average pool; a 2x2 kernel with max pool; a 1x1 convolution
    without pooling (per-tensor weights)."""
    n = Net([1, 20, 26, 1], RNG_SEED + 5)
    n.conv(9, 3, "VALID", 1)
    n.elementwise("LOGISTIC")
    n.pool("AVERAGE_POOL_2D", 2, 2, "VALID")
    n.conv(6, 2, "SAME", 1)
    n.pool("MAX_POOL_2D", 2, 2, "VALID")
    n.conv(4, 1, "VALID", 1, act="RELU6", per_channel=False)
    n.flatten_fc(3)
    return n.build()


def model_g() -> bytes:
    """Requantization multipliers of 1 and more (left shifts): a stride-1 convolution with 2x2
    pooling that the tile algorithm would take, and a fully connected layer, both on TFLM's
    generic arithmetic instead of the fast form."""
    n = Net([1, 8, 8, 2], RNG_SEED + 6)
    n.conv(3, 3, "SAME", 1, out_scale=0.0002)
    n.pool("AVERAGE_POOL_2D", 2, 2, "VALID")
    n.flatten_fc(4, out_scale=5e-7)
    return n.build()


def model_h() -> bytes:
    """A tile convolution too wide for the portable path's packed tile (5x5 over 12 input
    channels: the low sums could leave 22 bits, tile.packed_fits), which keeps the int16 pair
    tile and the 32-bit block there; under a 2x2 max pool. Then a 2x2 convolution that packs,
    but with one channel's bias so large that its low sums could leave 24 bits
    (tile.low_lane_fits): the ARMv6-M kernel splits the low values there instead of keeping
    the sums modulo 2^24."""
    n = Net([1, 8, 8, 12], RNG_SEED + 7)
    n.conv(4, 5, "SAME", 1)
    n.pool("MAX_POOL_2D", 2, 2, "VALID")
    n.conv(3, 2, "SAME", 1, bias_boost=4_500_000)
    n.pool("AVERAGE_POOL_2D", 2, 2, "VALID")
    return n.build()


def model_i() -> bytes:
    """Fully connected layers alone: 301 inputs (not a multiple of 4, and more than 64 groups
    of 4: two 64-bit chunks), 13 rows (three blocks of 4 and a 1-row tail) with one row of
    127s and one of -127s; 13 inputs to 11 rows (two blocks, a 2-row and a 1-row tail) with
    RELU fused and no table (the clamp at run time); then 6 rows (a 2-row tail) and LOGISTIC."""
    n = Net([1, 1, 1, 301], RNG_SEED + 7)
    n.flatten_fc(13, extreme=True)
    n.flatten_fc(11, act="RELU", out_scale=0.5)
    n.flatten_fc(6)
    n.elementwise("LOGISTIC")
    return n.build()


def model_j() -> bytes:
    """One strip per block row (the arena is set by the wide layer after): LeNet's first layer
    with SAME padding, LOGISTIC and an average pool, then a 3x3 SAME convolution without
    pooling. On the portable path each block row's packed tile is the previous one's moved up
    two rows (tile vfill), padding rows at both ends."""
    n = Net([1, 12, 12, 1], RNG_SEED + 8)
    n.conv(4, 5, "SAME", 1)
    n.elementwise("LOGISTIC")
    n.pool("AVERAGE_POOL_2D", 2, 2, "VALID")
    n.conv(32, 3, "SAME", 1)
    n.flatten_fc(5)
    return n.build()


MODELS = {
    "a": model_a,
    "b": model_b,
    "c": model_c,
    "d": model_d,
    "e": model_e,
    "f": model_f,
    "g": model_g,
    "h": model_h,
    "i": model_i,
    "j": model_j,
}


def inputs(shape: tuple[int, ...], n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(n, *shape[1:]), dtype=np.int8)
    x[0] = -128
    x[1] = 127
    x[2] = 0
    return x


def render_standalone(model: bytes, out: Path, optimize: str = "speed") -> Any:
    """Plan ``model`` (``export-c --optimize``) and write its standalone files into ``out``;
    return the plan."""
    graph = load_graph(model)
    plan = build_plan(graph, optimize)
    files = StandaloneWriter(plan, "lenet", "/* test */", None).render(
        {op.index: op.kind for op in graph.ops}
    )
    for fname, text in files.items():
        (out / fname).write_text(text)
    return plan
