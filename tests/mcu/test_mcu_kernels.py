"""The engine's Cortex-M code paths on the synthetic models of test_export_kernels (every kernel
path, including the tile convolution's odd cases: even and 1x1 kernels, sparse input channels,
padding, partial strips, max pooling, no pooling): built for the M4 with its DSP extension, for
the M4 without it (the portable C path) and for the M0, run under QEMU with the inputs linked
in, every output byte compared on the core with TFLM's.

Skips when the Cortex-M toolchain or QEMU is absent, unless the environment variable CI is set.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import numpy as np
import pytest

from firmware_export import mcu
from firmware_export import quantmath as qm
from firmware_export.csyntax import c_values
from firmware_export.export import reference_outputs
from tests.support import C_DIR
from tests.support.export_helpers import need_toolchain
from tests.support.kernel_models import MODELS, inputs, render_standalone

N_INPUTS = 24


#: (board, DSP path) builds.
CONFIGS = {
    "m4-dsp": ("mps2-an386", True),
    "m4-portable": ("mps2-an386", False),
    "m0": ("microbit", False),
}


def build_image(sa: Path, board: mcu.Board, dsp: bool, tool: mcu.Toolchain) -> Path:
    extra = [] if dsp else ["-DLENET_NO_DSP", "-U__ARM_FEATURE_DSP"]
    elf = sa / f"{board.name}-{'dsp' if dsp else 'portable'}.elf"
    argv = [
        tool.gcc,
        *board.cflags,
        *mcu.C_FLAGS,
        *extra,
        "-I",
        str(sa),
        "-I",
        str(mcu.COMMON_DIR),
        *sorted(str(p) for p in sa.glob("*.c")),
        str(mcu.COMMON_DIR / "startup.S"),
        str(mcu.COMMON_DIR / "semihost.c"),
        *mcu.link_flags(board),
        *mcu.LINK_LIBS,
        "-o",
        str(elf),
    ]
    proc = subprocess.run(argv, cwd=sa, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return elf


def run_on_core(tool: mcu.Toolchain, board: mcu.Board, elf: Path) -> None:
    """Run the image under QEMU; it must exit 0."""
    proc = subprocess.run(
        mcu.qemu_argv(tool, board, elf, []),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout[-500:]}"


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_cortex_m_paths_match_tflm(name: str, config: str, tmp_path: Path) -> None:
    tool = need_toolchain("arm-none-eabi-objdump")
    board_name, dsp = CONFIGS[config]
    board = mcu.load_board(board_name)
    model = MODELS[name]()
    sa = tmp_path / "sa"
    sa.mkdir()
    plan = render_standalone(model, sa)
    x = inputs(plan.input.shape, N_INPUTS)
    want = reference_outputs(model, plan, x)
    template = jinja2.Template((C_DIR / "vectors.h.j2").read_text(), keep_trailing_newline=True)
    (sa / "vectors.h").write_text(
        template.render(
            count=len(x),
            inputs=[c_values(v.reshape(-1).tolist(), 1 << 20, "") for v in x],
            expected=[c_values(v.tolist(), 1 << 20, "") for v in want],
        )
    )
    shutil.copy(C_DIR / "vectors_main.c", sa / "main.c")
    elf = build_image(sa, board, dsp, tool)
    run_on_core(tool, board, elf)
    # The paths really differ: SMLAD only in the DSP build of a model with tile convolutions
    # or fully connected layers.
    tiles = any(
        getattr(st, "tile", None) is not None or st.kind == "fully_connected" for st in plan.steps
    )
    objdump = shutil.which("arm-none-eabi-objdump") or "arm-none-eabi-objdump"
    text = subprocess.run(
        [objdump, "-d", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    assert ("smlad" in text) == (dsp and tiles)


def _requant_cases(n: int) -> list[tuple[int, int, int, int, int]]:
    """(acc2, multiplier, rnd, rshift, expected table index): accumulators at every scale and
    at the int32 and 2^23 edges, multipliers in TFLM's Q0.31 range and at the 16-bit splits,
    right shifts 1..21 with output zero points -128..127 (rnd then never overflows)."""
    rng = np.random.default_rng(11)
    accs = [-(1 << 31), -(1 << 31) + 1, -(1 << 23) + 1, -65537, -65536, -65535, -1, 0, 1,
            65535, 65536, (1 << 23) - 1, (1 << 31) - 1]  # fmt: skip
    mults = [0, 1, 255, 256, 65535, 65536, 1 << 30, (1 << 31) - 1]
    cases = []
    for i in range(n):
        if i < len(accs) * len(mults):
            a, m = accs[i % len(accs)], mults[i // len(accs)]
        else:
            a = int(rng.choice([-1, 1])) * int(rng.integers(0, 1 << int(rng.integers(1, 32))))
            a = max(a, -(1 << 31))
            m = int(rng.integers(1 << 30, 1 << 31))
        rshift = int(rng.integers(1, 22))
        zp = int(rng.integers(-128, 128))
        rnd = (1 << (rshift - 1)) + zp * (1 << rshift)
        cases.append((a, m, rnd, rshift, _index(a, m, rnd, rshift)))
    return cases


def _index(a: int, m: int, rnd: int, rshift: int) -> int:
    v = (qm.mulhi_round(a, m) + (a >> 31) + rnd) >> rshift
    return min(max(v, -128), 127) + 128


def _block_cases(n: int, table: list[int]) -> list[tuple[int, ...]]:
    """(q0, q1, q2, q3, multiplier, rnd, rshift, expected sum of table[index]): accumulators
    below 2^23 in magnitude, q0 and q1 with random top bytes (sums kept modulo 2^24)."""
    rng = np.random.default_rng(12)
    out = []
    for _ in range(n):
        m = int(rng.integers(1 << 30, 1 << 31))
        rshift = int(rng.integers(1, 22))
        rnd = (1 << (rshift - 1)) + int(rng.integers(-128, 128)) * (1 << rshift)
        accs = [int(rng.integers(-(1 << 23) + 1, 1 << 23) >> int(rng.integers(0, 23)))
                for _ in range(4)]  # fmt: skip
        qs = list(accs)
        for i in (0, 1):
            u = (accs[i] + (int(rng.integers(0, 256)) << 24)) & 0xFFFFFFFF
            qs[i] = u - (1 << 32) if u >= 1 << 31 else u
        total = sum(table[_index(a, m, rnd, rshift)] for a in accs)
        out.append((*qs, m, rnd, rshift, total))
    return out


def _c_int(v: int) -> str:
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)


def test_v6m_requantization_matches_python_on_the_core(tmp_path: Path) -> None:
    """The ARMv6-M assembly requantizations equal quantmath's on the M0: TFLM's fast form,
    saturation and the table offset, for 2,500 cases (the int32 and 2^23 edges, accumulators
    at every scale, 1 to 21 bit right shifts with every zero point), both the 16 x 16 form and,
    below 2^23, the byte chain; and 600 blocks of four through the fused block epilogue."""
    tool = need_toolchain("arm-none-eabi-objdump")
    board = mcu.load_board("microbit")
    sa = tmp_path / "sa"
    sa.mkdir()
    render_standalone(MODELS["c"](), sa)
    cases = _requant_cases(2500)
    table = [((i * 37) & 0xFF) - 128 for i in range(256)]
    blocks = _block_cases(600, table)

    def rows(values: list[tuple[int, ...]]) -> str:
        return ",\n".join("    {" + ", ".join(_c_int(v) for v in c) + "}" for c in values)

    (sa / "requant_cases.h").write_text(
        f"#define REQUANT_CASES {len(cases)}\n"
        f"static const int32_t requant_cases[][5] = {{\n{rows(cases)}\n}};\n"
        f"#define BLOCK_CASES {len(blocks)}\n"
        f"static const int32_t block_cases[][8] = {{\n{rows(blocks)}\n}};\n"
        "static const int8_t probe_table[256] = {" + ", ".join(map(str, table)) + "};\n"
    )
    for p in sa.glob("*.c"):
        p.unlink()  # the probe alone: it needs only lenet_arith.h
    shutil.copy(C_DIR / "requant_v6m_probe.c", sa / "main.c")
    run_on_core(tool, board, build_image(sa, board, False, tool))
