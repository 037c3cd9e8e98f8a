"""export-c: every kernel path against TFLM on small synthetic models.

LeNet variants only reach the fused conv + 2x2-pool path; these graphs (random weights,
chosen quantization) exercise the rest: stride 2, dilation, SAME padding with partial pooling
windows, overlapping pools (standalone pooling kernel), unfused convolutions whose positions
do not fill the last block, standalone and composed elementwise tables, per-tensor conv
weights, and all-zero input maps. Each model runs on random inputs plus the extreme ones,
compiled with -O2 and with the sanitizers, and must match TFLM bit for bit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_export.export import reference_outputs
from firmware_export.plan import Buffer, ConvStep, FullyConnectedStep, build_plan
from firmware_export.reader import load_graph
from tests.support import C_DIR
from tests.support.export_helpers import SANITIZE, compile_harness, requires, run_engine
from tests.support.kernel_models import MODELS, inputs, model_c, render_standalone

pytestmark = requires("gcc")


def _cpu_has(flag: str) -> bool:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in line.split() for line in cpuinfo.splitlines() if line.startswith("flags"))


#: Host builds: the portable path (-O2, and with the sanitizers) and, where the CPU has it,
#: the x86 AVX2 path (with and without the sanitizers) and whatever -march=native selects.
BUILDS = {
    "O2": ["-O2"],
    "sanitize": SANITIZE,
    "avx2": ["-O2", "-mavx2", "-mfma"],
    "avx2_sanitize": [*SANITIZE, "-mavx2", "-mfma"],
    "native": ["-O2", "-march=native"],
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_synthetic_model_bit_exact(name: str, build: str, tmp_path: Path) -> None:
    if build.startswith("avx2") and not _cpu_has("avx2"):
        pytest.skip("this CPU has no AVX2")
    model = MODELS[name]()
    plan = render_standalone(model, tmp_path)
    binary = compile_harness(tmp_path, tmp_path / "harness", BUILDS[build])
    x = inputs(plan.input.shape)
    got, _ = run_engine(binary, x, plan.output.size, tmp_path)
    expected = reference_outputs(model, plan, x)
    assert np.array_equal(got, expected), f"model {name}: {(got != expected).any(1).sum()} bad"


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("build", ["Os", "Os_sanitize"])
def test_synthetic_model_bit_exact_optimize_size(name: str, build: str, tmp_path: Path) -> None:
    """export-c --optimize size: every convolution generic with int8 weights in blocks of
    two, the softmax exp computed; built at -Os as that export's Makefile does."""
    model = MODELS[name]()
    plan = render_standalone(model, tmp_path, "size")
    assert plan.optimize == "size" and plan.conv_block == 2
    assert all(getattr(st, "tile", None) is None for st in plan.steps)
    assert all(getattr(st, "exp_table", None) is None for st in plan.steps)
    flags = ["-Os"] if build == "Os" else [*SANITIZE, "-Os"]
    binary = compile_harness(tmp_path, tmp_path / "harness", flags)
    x = inputs(plan.input.shape)
    got, _ = run_engine(binary, x, plan.output.size, tmp_path)
    expected = reference_outputs(model, plan, x)
    assert np.array_equal(got, expected), f"model {name}: {(got != expected).any(1).sum()} bad"


@pytest.mark.parametrize("flags", [["-O2"], SANITIZE])
def test_softmax_exp_computed_matches_the_table(flags: list[str], tmp_path: Path) -> None:
    """The exp that --optimize size computes in C equals, for every one of the 256
    differences, the Q0.31 table a speed export embeds (quantmath, TFLM's arithmetic), over
    a spread of input scales and betas (and so of multipliers, shifts and diff_min)."""
    from firmware_export import quantmath as qm
    from tests.support.kernel_models import model_a

    plan = render_standalone(model_a(), tmp_path, "size")
    assert any(st.kind == "softmax" for st in plan.steps)
    binary = tmp_path / "probe"
    subprocess.run(
        ["gcc", "-std=c99", *flags, "-I", str(tmp_path), str(C_DIR / "softmax_exp_probe.c"),
         "-o", str(binary)],
        check=True,
    )  # fmt: skip
    params = [
        qm.softmax_params(beta, scale)
        for beta in (0.25, 1.0, 3.0)
        for scale in (1 / 256, 0.01, 0.0625, 0.1, 0.25, 0.5, 1.0, 4.0)
    ]
    assert len({p.input_left_shift for p in params}) >= 5
    assert any(p.diff_min > -255 for p in params)  # some differences give exp 0
    out = subprocess.run(
        [str(binary)],
        input="".join(f"{p.input_multiplier} {p.input_left_shift} {p.diff_min}\n" for p in params),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert len(lines) == len(params)
    for p, line in zip(params, lines, strict=True):
        assert [int(v) for v in line.split()] == qm.softmax_exp_table(p), p


def test_synthetic_models_cover_every_kernel_path() -> None:
    kinds: set[str] = set()
    for make in MODELS.values():
        plan = build_plan(load_graph(make()))
        for st in plan.steps:
            kinds.add(st.kind)
            if isinstance(st, ConvStep):
                kinds.add(f"{st.algo}_pool_{st.pool.kind if st.pool else 'none'}")
                if st.tile is not None:
                    kinds.add(f"tile_{st.kernel_h}x{st.kernel_w}")
                    if not st.tile.dense:
                        kinds.add("tile_sparse")
                    if len(st.patch_channels) == 1 and st.tile.windows >= 4:
                        kinds.add("tile_one_channel_wide")
                    if st.out_c > 16:
                        kinds.add("tile_many_channels")
                    if st.tile.blocks_w % st.tile.windows:
                        kinds.add("tile_partial_strip")
                    if st.pad_top or st.pad_left:
                        kinds.add("tile_padding")
                    if st.tile.windows < st.tile.blocks_w:
                        kinds.add("tile_slide")
                    src, dst = st.src, st.dst
                    if (
                        src.location == dst.location == "arena"
                        and src is not dst
                        and dst.offset < src.offset + src.size
                        and src.offset < dst.offset + dst.size
                    ):
                        kinds.add("tile_output_over_input")
                if st.stride_h > 1:
                    kinds.add("stride")
                if st.dilation_h > 1:
                    kinds.add("dilation")
                if st.pad_top or st.pad_left:
                    kinds.add("same_padding")
                if st.skipped_channels:
                    kinds.add("zero_maps")
                if st.table and len(st.table.ops) > 1:
                    kinds.add("composed_table")
            if isinstance(st, FullyConnectedStep):
                kinds.update(f"fc_block_{r}" for r in st.row_blocks())
                if st.in_size % 4:
                    kinds.add("fc_odd_input")
                if st.in_size > 4 * 64:
                    kinds.add("fc_two_chunks")
                if st.table is None and (st.act_min, st.act_max) != (-128, 127):
                    kinds.add("fc_clamp_without_table")
            if isinstance(st, ConvStep | FullyConnectedStep) and st.fast is None:
                kinds.add(f"{st.kind}_generic_requantization")
            if st.in_place:
                kinds.add("in_place")
            if st.src.location == "input" and st.kind == "lut":
                kinds.add("lut_on_input")
    assert {
        "conv",
        "pool",
        "lut",
        "fully_connected",
        "softmax",
        "generic_pool_none",
        "generic_pool_avg",
        "tile_pool_none",
        "tile_pool_avg",
        "tile_pool_max",
        "tile_1x1",
        "tile_2x2",
        "tile_3x3",
        "tile_4x4",
        "tile_sparse",
        "tile_one_channel_wide",
        "tile_many_channels",
        "tile_partial_strip",
        "tile_padding",
        "tile_slide",
        "tile_output_over_input",
        "conv_generic_requantization",
        "fully_connected_generic_requantization",
        "stride",
        "dilation",
        "same_padding",
        "zero_maps",
        "composed_table",
        "in_place",
        "lut_on_input",
        "fc_block_4",
        "fc_block_2",
        "fc_block_1",
        "fc_odd_input",
        "fc_two_chunks",
        "fc_clamp_without_table",
    } <= kinds


@pytest.mark.parametrize("arch", ["int64", "armv6m"])
def test_rounding_high_multiply_matches_python(arch: str, tmp_path: Path) -> None:
    """The C rounding high multiply (int64 product, or the four 16 x 16 products the ARMv6-M
    build uses instead of a libgcc call) equals floor((a * m + 2^31) / 2^32) on edge and
    random values; the fast requantization built on it too."""
    from firmware_export import quantmath as qm

    render_standalone(model_c(), tmp_path)
    flags = ["-D__ARM_ARCH_6M__"] if arch == "armv6m" else []
    binary = tmp_path / "probe"
    subprocess.run(
        ["gcc", "-std=c99", "-O2", *flags, "-I", str(tmp_path), str(C_DIR / "mulhi_probe.c"), "-o",
         str(binary)],
        check=True,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    edges = [-(1 << 31), -(1 << 31) + 1, -(1 << 30), -65536, -65535, -1, 0, 1, 65535, 65536,
             (1 << 30) - 1, (1 << 31) - 1]  # fmt: skip
    ms = [0, 1, 65535, 65536, 1 << 30, (1 << 31) - 1]
    pairs = [(a, m) for a in edges for m in ms]
    pairs += list(
        zip(
            rng.integers(-(1 << 31), 1 << 31, 3000).tolist(),
            rng.integers(0, 1 << 31, 3000).tolist(),
            strict=True,
        )
    )
    out = subprocess.run(
        [str(binary)],
        input="".join(f"{a} {m}\n" for a, m in pairs),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for (a, m), line in zip(pairs, out, strict=False):
        hi, rq = (int(v) for v in line.split())
        assert hi == qm.mulhi_round(a, m), (a, m)
        x = qm.mulhi_round(a, m)
        # The C form takes the rounding correction's sign from the accumulator (one SMMLAR);
        # on the full int32 range it equals the form with the product's sign.
        assert rq == (x + (a >> 31) + (1 << 9)) >> 10, (a, m)
        assert rq == (x + (x >> 31) + (1 << 9)) >> 10, (a, m)


def test_fc_weight_layout_is_one_block_per_rows_without_padding() -> None:
    """packed_weights: blocks of 4, 2 and 1 rows, [groups][rows][4] bytes of w + 128 each, zero
    beyond in_size, and exactly out_size * in_padded bytes (no padded rows)."""
    w = np.arange(7 * 6, dtype=np.int64).reshape(7, 6) - 20
    buf = Buffer(0, 6, "input")
    st = FullyConnectedStep("fc", "fully_connected", [], buf, buf, in_size=6, out_size=7, weights=w)
    assert st.row_blocks() == [4, 2, 1]
    got = st.packed_weights()
    assert got.dtype == np.uint8 and got.size == 7 * 8
    u = np.zeros((7, 8), np.int64)
    u[:, :6] = w + 128
    want = [u[r, 4 * g + i] for g in range(2) for r in range(4) for i in range(4)]
    want += [u[4 + r, 4 * g + i] for g in range(2) for r in range(2) for i in range(4)]
    want += [u[6, k] for k in range(8)]
    assert got.tolist() == want
