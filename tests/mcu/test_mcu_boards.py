"""Board packages, startup code, trace parsing and mcu-test's one-line errors.

Tests that need the Cortex-M toolchain and QEMU skip when those are absent, unless the
environment variable CI is set (CI installs them through `.ci/run`), where they fail.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_export import mcu
from firmware_export.mcu import trace
from firmware_export.mcu.toolchain import failure_detail
from lenet_edge.cli import main
from lenet_edge.commands.mcu_test import BOARDS, command
from tests.support.export_helpers import MCU_TOOLS, TRACE_MARKERS, need_toolchain, qemu_trace

# The memory map of issue 5: (core, flash origin, flash size, RAM origin, RAM size).
EXPECTED_BOARDS = {
    "mps2-an386": ("Cortex-M4F", 0x0, 4 << 20, 0x20000000, 4 << 20),
    "mps2-an500": ("Cortex-M7", 0x0, 4 << 20, 0x20000000, 4 << 20),
    "microbit": ("Cortex-M0", 0x0, 256 << 10, 0x20000000, 16 << 10),
    "stm32vldiscovery": ("Cortex-M3", 0x08000000, 128 << 10, 0x20000000, 8 << 10),
}


def test_one_board_list() -> None:
    """The board packages are the one list: the command's boards (in the order `--board all`
    runs them) and this module's table of expected facts cover exactly those."""
    assert list(BOARDS) == mcu.board_names()
    assert sorted(EXPECTED_BOARDS) == sorted(mcu.board_names())
    assert sorted(p.parent.name for p in mcu.BOARDS_DIR.glob("*/board.json")) == sorted(BOARDS)
    choice = next(p for p in command.params if p.name == "board").type
    assert list(choice.choices) == [*mcu.board_names(), "all"]


def test_board_packages_carry_the_real_memory_maps() -> None:
    assert sorted(mcu.board_names()) == sorted(BOARDS) == sorted(EXPECTED_BOARDS)
    for name, (core, f_org, f_len, r_org, r_len) in EXPECTED_BOARDS.items():
        b = mcu.load_board(name)
        assert (b.core, b.flash, b.ram) == (
            core,
            mcu.Region(f_org, f_len),
            mcu.Region(r_org, r_len),
        )
        assert b.qemu_machine == name
        assert b.stack_size < b.ram.length
    m4 = mcu.load_board("mps2-an386")
    assert [f for f in m4.cflags if f != "-mthumb"] == [
        "-mcpu=cortex-m4",
        "-mfloat-abi=hard",
        "-mfpu=fpv4-sp-d16",
    ]


def test_unknown_board_is_a_usage_error() -> None:
    with pytest.raises(mcu.McuUsageError, match="unknown board 'nrf52'"):
        mcu.load_board("nrf52")


#: The startup probe (a C file of the board packages' common folder).
STARTUP_PROBE = mcu.COMMON_DIR / "startup_probe.c"


def _build_probe(
    tool: mcu.Toolchain, board: mcu.Board, tmp: Path, defines: tuple[str, ...] = ()
) -> Path:
    common = mcu.COMMON_DIR
    elf = tmp / f"{board.name}.elf"
    argv = [
        tool.gcc,
        *board.cflags,
        *mcu.C_FLAGS,
        *defines,
        "-I",
        str(common),
        str(STARTUP_PROBE),
        str(common / "startup.S"),
        str(common / "semihost.c"),
        *mcu.link_flags(board),
        *mcu.LINK_LIBS,
        "-o",
        str(elf),
    ]
    proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return elf


def _qemu(tool: mcu.Toolchain, board: mcu.Board, elf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mcu.qemu_argv(tool, board, elf, ["probe"]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("board_name", BOARDS)
def test_startup_copies_data_zeroes_bss_and_exit_code_reaches_the_shell(
    board_name: str, tmp_path: Path
) -> None:
    tool = need_toolchain()
    board = mcu.load_board(board_name)
    elf = _build_probe(tool, board, tmp_path)
    proc = _qemu(tool, board, elf)
    assert proc.stdout == "probe ok\n"
    assert proc.returncode == 37  # SYS_EXIT_EXTENDED: any code, not just 0/1


@pytest.mark.parametrize("board_name", BOARDS)
def test_a_cpu_fault_ends_the_run_with_the_fault_exit_code(board_name: str, tmp_path: Path) -> None:
    tool = need_toolchain()
    board = mcu.load_board(board_name)
    elf = _build_probe(tool, board, tmp_path, defines=("-DPROBE_FAULT",))
    proc = _qemu(tool, board, elf)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert proc.stdout.startswith("MCU-FAULT exception=0x03")  # HardFault (escalated)


def test_ram_overflow_fails_at_link_time(tmp_path: Path) -> None:
    tool = need_toolchain()
    board = mcu.load_board("stm32vldiscovery")
    # 6 KB of .bss plus the 2 KB stack reservation (and a few bytes more) exceed the 8 KB.
    with pytest.raises(AssertionError, match="region `RAM' overflowed"):
        _build_probe(tool, board, tmp_path, defines=("-DPROBE_BSS=6144",))
    elf = _build_probe(tool, board, tmp_path, defines=("-DPROBE_BSS=5120",))
    assert _qemu(tool, board, elf).returncode == 37


def test_flash_overflow_fails_at_link_time(tmp_path: Path) -> None:
    tool = need_toolchain()
    board = mcu.load_board("stm32vldiscovery")
    with pytest.raises(AssertionError, match="region `FLASH' overflowed"):
        _build_probe(tool, board, tmp_path, defines=(f"-DPROBE_ROM={128 * 1024}",))
    elf = _build_probe(tool, board, tmp_path, defines=(f"-DPROBE_ROM={120 * 1024}",))
    assert _qemu(tool, board, elf).returncode == 37


def test_a_link_failure_gives_the_linker_reason_in_one_line() -> None:
    ld = "/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld"
    stderr = (
        f"{ld}: image.elf section `.bss' will not fit in region `RAM'\n"
        f"{ld}: region `RAM' overflowed by 123 bytes\n"
        "collect2: error: ld returned 1 exit status\n"
    )
    assert failure_detail(stderr, 1) == (
        "ld: image.elf section `.bss' will not fit in region `RAM'; "
        "ld: region `RAM' overflowed by 123 bytes"
    )
    undefined = (
        f"{ld}: lib/lenet.o: in function `lenet_infer':\n"
        "lenet.c:(.text.lenet_infer+0x6): undefined reference to `f'\n"
        "collect2: error: ld returned 1 exit status\n"
    )
    assert "undefined reference to `f'" in failure_detail(undefined, 1)
    # A compiler error keeps its error lines only.
    cc = "x.c: In function 'main':\nx.c:3:5: error: 'y' undeclared\n"
    assert failure_detail(cc, 1) == "x.c:3:5: error: 'y' undeclared"


def test_a_link_failure_of_the_builder_says_why(tmp_path: Path) -> None:
    """A stack larger than the 8 KB of RAM: the error names the overflowed region."""
    tool = need_toolchain()
    export = _fake_export(tmp_path)
    (export / "standalone" / "lenet.h").write_text(
        "#define LENET_INPUT_SIZE 1024\n#define LENET_OUTPUT_SIZE 10\n"
        "#define LENET_SCRATCH_SIZE 16\n#define LENET_OK 0\n#include <stdint.h>\n"
        "int lenet_infer(const int8_t *in, int8_t *out, void *scratch);\n"
        "int lenet_quantize_mnist(const uint8_t *raw, int8_t *in);\n"
    )
    (export / "standalone" / "lenet_model.c").write_text(
        '#include "lenet.h"\n'
        "int lenet_infer(const int8_t *in, int8_t *out, void *scratch)\n"
        "{ (void)in; (void)scratch; out[0] = 0; return LENET_OK; }\n"
        "int lenet_quantize_mnist(const uint8_t *raw, int8_t *in)\n"
        "{ in[0] = (int8_t)raw[0]; return LENET_OK; }\n"
    )
    board = mcu.load_board("stm32vldiscovery")
    builder = mcu.Builder(
        mcu.read_export(export), board, tool, tmp_path / "build", stack_size=16 << 10
    )
    with pytest.raises(mcu.McuError) as info:
        builder.link(np.zeros((1, 28, 28), np.uint8), np.zeros((1, 10), np.int8))
    message = str(info.value)
    assert message.startswith("linking for stm32vldiscovery (1 test vectors) failed: ")
    assert "region `RAM' overflowed by" in message and "\n" not in message
    assert "ld returned 1" not in message


# --- the instruction trace ------------------------------------------------------------------


def test_trace_regions_split_per_image_phase_and_call() -> None:
    markers = TRACE_MARKERS
    # Root (infer) function at [0x500, 0x510); kernels at 0x600 and 0x700; harness at 0x30.
    pcs = [
        *(0x10, 0x12),  # reset code: no region
        *(0x100, 0x102, 0x30, 0x400, 0x402),  # quantize marker, harness, quantize
        *(0x110, 0x30, 0x500, 0x502),  # infer marker, harness call, infer prologue
        *(0x600, 0x602, 0x602, 0x900),  # first call: a kernel and a helper it calls
        *(0x504, 0x506),
        *(0x700,),  # second call
        *(0x508, 0x30, 0x120, 0x122, 0x34),  # epilogue, harness, done marker, harness
        *(0x100, 0x400, 0x110, 0x500, 0x700, 0x120),  # second image: a tail call
    ]
    first, second = trace._trace_regions(qemu_trace(pcs), markers, root=(0x500, 0x510))
    assert first.quantize == {0x100: 1, 0x102: 1, 0x30: 1, 0x400: 1, 0x402: 1}
    assert first.infer == {
        0x110: 1, 0x30: 2, 0x500: 1, 0x502: 1, 0x600: 1, 0x602: 2, 0x900: 1,
        0x504: 1, 0x506: 1, 0x700: 1, 0x508: 1,
    }  # fmt: skip
    assert first.calls == [{0x600: 1, 0x602: 2, 0x900: 1}, {0x700: 1}, {0x30: 1}]
    assert second.quantize == {0x100: 1, 0x400: 1}
    assert second.infer == {0x110: 1, 0x500: 1, 0x700: 1}
    assert second.calls == [{0x700: 1}]


def test_trace_regions_keep_qemu_messages_and_any_pc_width() -> None:
    text = (
        "qemu-system-arm: warning: something odd\n"
        "Trace 0: 0x7f00 [00000000/0000000000000100/00000110/ff000201] m\n"
        "Trace 0: 0x7f01 [00000000/0000000000000400/00000110/ff000201] q\n"
    )
    other: list[str] = []
    (only,) = trace._trace_regions(io.BytesIO(text.encode()), {0x100: "mcu_mark_quantize"},
                                 other_lines=other)  # fmt: skip
    assert only.quantize == {0x100: 1, 0x400: 1}
    assert other == ["qemu-system-arm: warning: something odd"]


def test_symbol_table_maps_pcs_to_functions_and_objects() -> None:
    symbols = [
        mcu.Symbol(0x100, 0x10, "mcu_mark_infer"),
        mcu.Symbol(0x200, 0x40, "conv"),
        mcu.Symbol(0x240, 0x8, "__aeabi_lmul"),
    ]
    sections = [
        mcu.MapSection(".text", ".text.mcu_mark_infer", 0x100, 0x10, "harness/harness.o"),
        mcu.MapSection(".text", ".text.conv", 0x200, 0x40, "lib/lenet_conv.o"),
        mcu.MapSection(".text", ".text", 0x240, 0x8, "/usr/lib/libgcc.a(_muldi3.o)"),
    ]
    table = trace._SymbolTable(symbols, sections)
    assert [table.name(pc) for pc in (0x100, 0x23E, 0x244, 0x300)] == [
        "mcu_mark_infer",
        "conv",
        "__aeabi_lmul",
        "0x00000300",
    ]
    assert [table.category(pc) for pc in (0x104, 0x200, 0x246, 0x300)] == [
        "harness",
        "library",
        "runtime",
        "unknown",
    ]


def test_macs_from_export_json() -> None:
    assert mcu.macs_from_export_json({"macs_total": 326520}) == 326520
    assert (
        mcu.macs_from_export_json(
            {"layers": [{"macs": 117600}, {"macs": 150000}, {"name": "reshape"}]}
        )
        == 267600
    )
    assert mcu.macs_from_export_json({"layers": []}) is None


def test_compare_outputs_counts_every_byte() -> None:
    want = np.arange(40, dtype=np.int8).reshape(4, 10)
    got = want.copy()
    assert mcu.compare_outputs(got, want)["mismatched_images"] == 0
    got[2, 9] += 1
    got[3, 0] -= 1
    got[3, 1] -= 1
    assert mcu.compare_outputs(got, want) == {
        "images": 4,
        "mismatched_images": 2,
        "mismatched_bytes": 3,
        "first_mismatch": 2,
    }


# --- one-line errors of the command ---------------------------------------------------------


def _fake_export(root: Path) -> Path:
    d = root / "export"
    (d / "standalone").mkdir(parents=True)
    (d / "export.json").write_text(json.dumps({"prefix": "lenet"}))
    (d / "standalone" / "lenet.h").write_text("#define LENET_OUTPUT_SIZE 10\n")
    (d / "standalone" / "lenet_model.c").write_text("int lenet_unused;\n")
    (d / "model.tflite").write_bytes(b"not read before the toolchain check")
    return d


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert "\n" not in err
    assert "Traceback" not in err
    return err


def test_bad_board_name_is_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _fake_export(tmp_path)
    assert main(["mcu-test", str(d), "--board", "nrf52"]) == 2
    assert "nrf52" in _one_line_error(capsys)


def test_bad_images_value_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _fake_export(tmp_path)
    assert main(["mcu-test", str(d), "--board", "microbit", "--images", "0"]) == 2
    assert "--images" in _one_line_error(capsys)


def test_missing_toolchain_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _fake_export(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["mcu-test", str(d), "--board", "stm32vldiscovery"]) == 1
    err = _one_line_error(capsys)
    assert "arm-none-eabi-gcc not found" in err
    assert "gcc-arm-none-eabi" in err  # says what to install


def test_missing_qemu_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need_toolchain()
    d = _fake_export(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in MCU_TOOLS:
        if tool != "qemu-system-arm":
            (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main(["mcu-test", str(d), "--board", "all"]) == 1
    assert "qemu-system-arm not found" in _one_line_error(capsys)


@pytest.mark.parametrize("breakage", ["no-export-json", "no-prefix", "no-header", "no-model"])
def test_directory_that_is_not_an_export_is_one_line_error(
    breakage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _fake_export(tmp_path)
    if breakage == "no-export-json":
        (d / "export.json").unlink()
    elif breakage == "no-prefix":
        (d / "export.json").write_text("{}")
    elif breakage == "no-header":
        (d / "standalone" / "lenet.h").unlink()
    else:
        (d / "model.tflite").unlink()
    assert main(["mcu-test", str(d), "--board", "microbit"]) == 1
    assert "export-c" in _one_line_error(capsys)
