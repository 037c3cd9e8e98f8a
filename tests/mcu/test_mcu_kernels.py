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
import pytest

from firmware_export import mcu
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
    proc = subprocess.run(
        mcu.qemu_argv(tool, board, elf, []),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout[-500:]}"
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
