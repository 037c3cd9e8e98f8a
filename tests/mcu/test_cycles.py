"""The cycle estimate of ``firmware_export.mcu.cycles``: the classifier on hand-written objdump
lines, taken and not-taken branches from the next PC, load/store pipelining from the previous
one, a synthetic trace with a hand-computed total, and a real Cortex-M4 function run under
QEMU whose estimate must equal the figure computed by hand from the Cortex-M4 TRM table.

The last test skips when the Cortex-M toolchain or QEMU is absent, unless CI is set.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from firmware_export import mcu
from firmware_export.mcu import cycles, trace
from lenet_edge import bench
from tests.support import C_DIR
from tests.support.export_helpers import TRACE_MARKERS, need_toolchain, qemu_trace

M4 = cycles.MODELS["Cortex-M4"]
M0 = cycles.MODELS["Cortex-M0"]

#: objdump -d lines as arm-none-eabi-objdump prints them (address, halfwords, mnemonic,
#: operands); the tricky mnemonics are those whose condition or S suffix must be split off.
LINES = """\
     100:\tb570      \tpush\t{r4, r5, r6, lr}
     102:\td9f0      \tbls.n\t166 <f+0x66>
     104:\tea22 0303 \tbics.w\tr3, r2, r3
     106:\tdbf0      \tblt.n\t166 <f+0x66>
     108:\tf000 f80a \tbl\t120 <g>
     10c:\tbf88      \tit\thi
     10e:\t6033      \tstrhi\tr3, [r6, #0]
     110:\tf857 3b04 \tldr.w\tr3, [r7], #4
     114:\tf847 0034 \tstr.w\tr0, [r7, r4, lsl #3]
     118:\tfb2c 4c09 \tsmlad\tip, ip, r9, r4
     11c:\tfa2f fc86 \tsxtb16\tip, r6
     120:\te8bd 8ff0 \tldmia.w\tsp!, {r4, r5, r6, r7, r8, r9, sl, fp, pc}
     124:\tb4f0      \tpush\t{r4-r7}
     126:\t46f7      \tmov\tpc, lr
     128:\tf85d fb04 \tldr.w\tpc, [sp], #4
     12c:\tb11b      \tcbz\tr3, 136 <f+0x36>
     12e:\te9d3 5400 \tldrd\tr5, r4, [r3]
     132:\tfbb0 f0f1 \tudiv\tr0, r0, r1
     136:\tbf1e      \tittt\tne
     138:\t4770      \tbxne\tlr
     13a:\t4358      \tmuls\tr0, r3
     13c:\tee30 0a20 \tvadd.f32\ts0, s0, s1
     140:\t00000f8d \t.word\t0x00000f8d
     144:\t4b02      \tldr\tr3, [pc, #8]\t; (150 <f+0x50>)
"""


def test_classifier_on_objdump_lines() -> None:
    code = cycles.parse_disassembly(LINES)
    got = {
        a: (i.kind, i.registers, i.conditional, i.size, i.pipelines_next) for a, i in code.items()
    }
    assert got == {
        0x100: ("load_store_multiple", 4, False, 2, False),
        0x102: ("branch", 0, True, 2, False),  # b + ls, not bl + s
        0x104: ("alu", 0, False, 4, False),  # bic + s, not b + ics
        0x106: ("branch", 0, True, 2, False),
        0x108: ("call", 0, False, 4, False),
        0x10C: ("it", 0, False, 2, False),
        0x10E: ("load_store", 0, True, 2, True),  # str + hi, not strh + i
        0x110: ("load_store", 0, False, 4, True),
        0x114: ("load_store", 0, False, 4, False),  # STR, register offset: nothing pipelines
        0x118: ("dsp_mac", 0, False, 4, False),
        0x11C: ("dsp_alu", 0, False, 4, False),
        0x120: ("pop_pc", 9, False, 4, False),
        0x124: ("load_store_multiple", 4, False, 2, False),  # a range: r4-r7
        0x126: ("pc_write", 0, False, 2, False),
        0x128: ("load_pc", 0, False, 4, False),
        0x12C: ("branch", 0, True, 2, False),  # CBZ is conditional
        0x12E: ("load_store_double", 0, False, 4, False),
        0x132: ("div", 0, False, 4, False),
        0x136: ("it", 0, False, 2, False),
        0x138: ("branch_reg", 0, True, 2, False),
        0x13A: ("mul", 0, False, 2, False),
        0x13C: ("unclassified", 0, False, 4, False),  # no FP row: charged 1 and listed
        0x144: ("load_store", 0, False, 2, True),  # a literal load; .word skipped
    }
    assert code[0x110].loads == "r3" and code[0x110].address_registers == {"r7"}
    assert code[0x114].address_registers == {"r7", "r4"}


def test_taken_and_not_taken_from_the_next_pc() -> None:
    code = cycles.parse_disassembly(LINES)
    # bls.n at 0x102 (2 bytes): falling through to 0x104 is not taken.
    assert cycles.class_of(code, M4, 0x100, 0x102, 0x104) == ("not_taken", 0)
    assert cycles.class_of(code, M4, 0x100, 0x102, 0x166) == ("branch", 0)
    # A 4-byte BL is never conditional: taken even to the next address.
    assert cycles.class_of(code, M4, 0x106, 0x108, 0x10C) == ("call", 0)
    # CBZ and a conditional BX in an IT block.
    assert cycles.class_of(code, M4, 0x12A, 0x12C, 0x12E) == ("not_taken", 0)
    assert cycles.class_of(code, M4, 0x12A, 0x12C, 0x136) == ("branch", 0)
    assert cycles.class_of(code, M4, 0x136, 0x138, 0x13A) == ("not_taken", 0)
    assert cycles.class_of(code, M4, 0x136, 0x138, 0x400) == ("branch_reg", 0)
    assert cycles.class_of(code, M4, 0x11C, 0x120, 0x400) == ("pop_pc", 9)
    # Pipelining: after a load or store, except after an STR with a register offset, on the M4.
    assert cycles.class_of(code, M4, 0x10E, 0x110, 0x114) == ("load_store_pipelined", 0)
    assert cycles.class_of(code, M4, 0x114, 0x110, 0x114) == ("load_store", 0)
    assert cycles.class_of(code, M4, 0x110, 0x114, 0x118) == ("load_store_pipelined", 0)
    assert cycles.class_of(code, M0, 0x10E, 0x110, 0x114) == ("load_store", 0)
    # Costs: taken 1 + P (P = 2) on the M4, 3 on the M0; not taken 1 on both.
    assert cycles.estimate({(0x100, 0x102, 0x166): 1}, code, M4).cycles == 3
    assert cycles.estimate({(0x100, 0x102, 0x166): 1}, code, M0).cycles == 3
    assert cycles.estimate({(0x100, 0x102, 0x104): 1}, code, M4).cycles == 1
    assert cycles.estimate({(0x100, 0x108, 0x120): 1}, code, M0).cycles == 4  # BL


#: A loop for the synthetic trace: r2 = *r0 (post-increment), r1 = *r2 (depends on r2),
#: subs, bne back to 0x200.
LOOP = """\
     1fc:\tb530      \tpush\t{r4, r5, lr}
     1fe:\t2303      \tmovs\tr3, #3
     200:\tf850 2b04 \tldr.w\tr2, [r0], #4
     204:\t6811      \tldr\tr1, [r2, #0]
     206:\t6804      \tldr\tr4, [r0, #0]
     208:\t3b01      \tsubs\tr3, #1
     20a:\td1f9      \tbne.n\t200 <loop+0x4>
     20c:\tbd30      \tpop\t{r4, r5, pc}
"""


def test_synthetic_trace_has_the_hand_computed_total() -> None:
    code = cycles.parse_disassembly(LOOP)
    body = [0x200, 0x204, 0x206, 0x208, 0x20A]
    pcs = [0x100, 0x110, 0x1FC, 0x1FE, *body * 3, 0x20C, 0x120]
    (image,) = trace._trace_regions(qemu_trace(pcs), TRACE_MARKERS)
    assert image.infer == {0x110: 1, 0x1FC: 1, 0x1FE: 1, **dict.fromkeys(body, 3), 0x20C: 1}
    assert image.infer_steps[(0x1FE, 0x200, 0x204)] == 1
    assert image.infer_steps[(0x20A, 0x200, 0x204)] == 2
    assert image.infer_steps[(0x208, 0x20A, 0x200)] == 2
    assert image.infer_steps[(0x208, 0x20A, 0x20C)] == 1
    code_only = lambda pc: pc in code  # noqa: E731  (the markers are not in the listing)
    m4 = cycles.estimate(image.infer_steps, code, M4, code_only)
    # Cortex-M4, P = 2. Per iteration: ldr.w 2 (after movs or bne), ldr r1,[r2] 2 (its
    # address is the register just loaded: no pipelining), ldr r4,[r0] 1 (pipelined),
    # subs 1; bne taken 3 twice, not taken 1 once.
    push, movs, pop = 1 + 3, 1, 1 + 3 + 2
    loop_m4 = 3 * (2 + 2 + 1 + 1) + 3 + 3 + 1
    assert m4.cycles == push + movs + loop_m4 + pop == 36
    assert (m4.low, m4.high) == (36 - 3, 36 + 3)  # three taken transfers, P from 1 to 3
    assert m4.instructions == 1 + 1 + 15 + 1
    assert m4.by_class["load_store_pipelined"] == [3, 3]
    assert m4.by_class["not_taken"] == [1, 1]
    m0 = cycles.estimate(image.infer_steps, code, M0, code_only)
    # Cortex-M0: loads 2, taken branch 3, POP with PC 4 + N.
    loop_m0 = 3 * (2 + 2 + 2 + 1) + 3 + 3 + 1
    assert m0.cycles == (1 + 3) + 1 + loop_m0 + (4 + 3) == 40
    assert m0.low == m0.high == m0.cycles


def test_trace_steps_survive_chunk_boundaries() -> None:
    """The neighbours of a PC are found across the reader's chunks."""

    class Trickle(io.BytesIO):
        def read1(self, size: int = -1) -> bytes:
            return super().read1(7)  # a few bytes at a time: every line is cut

    pcs = [0x100, 0x110, 0x200, 0x204, 0x206, 0x120]
    (whole,) = trace._trace_regions(qemu_trace(pcs), TRACE_MARKERS)
    (cut,) = trace._trace_regions(Trickle(qemu_trace(pcs).getvalue()), TRACE_MARKERS)
    assert (
        cut.infer_steps
        == whole.infer_steps
        == {
            (0x100, 0x110, 0x200): 1,
            (0x110, 0x200, 0x204): 1,
            (0x200, 0x204, 0x206): 1,
            (0x204, 0x206, 0x120): 1,
        }
    )


def test_models_and_labels() -> None:
    assert cycles.model_for("Cortex-M4F") is M4
    assert cycles.model_for("Cortex-M0") is M0
    assert cycles.model_for("Cortex-M0+") is None  # a different core, not the M0's table
    assert cycles.model_for("Cortex-M7") is None
    assert "dsp_mac" not in cycles.MODELS["Cortex-M3"].table
    assert [m.clocks_mhz for m in (M4, M0)] == [(80, 168), (16, 48)]
    # Every class that classify() can produce has a row in the M4 table.
    assert set(cycles._KINDS.values()) | {"it", "pc_write", "load_pc", "pop_pc"} <= set(M4.table)
    off = cycles.summarize("Cortex-M7", None, None, None, [], None, 100)
    assert off == {
        "label": "estimated from the instruction trace",
        "modelled": False,
        "core": "Cortex-M7",
        "reason": cycles.NOT_MODELLED["Cortex-M7"],
    }


def test_bench_keeps_cycles_apart_from_tflm_instruction_counts() -> None:
    est = cycles.Estimate(cycles=1_600, low=1_500, high=1_700, instructions=1_000)
    layer = cycles.Estimate(cycles=1_200, low=1_100, high=1_300, instructions=800)
    cyc = cycles.summarize(
        "Cortex-M4F", M4, est, None, [layer], [{"name": "conv0", "macs": 800}], 1_000
    )
    assert cyc["ms"] == [{"clock_mhz": 80, "ms": 0.02}, {"clock_mhz": 168, "ms": 0.01}]
    board = {
        "board": "mps2-an386",
        "core": "Cortex-M4F",
        "dsp_path_enabled": True,
        "instructions": {"per_inference": 1_000, "per_mac": 1.0, "per_layer": []},
        "memory": {"flash": {"library": 1}, "peak_ram": 1, "stack": {"high_water": 1}},
        "cycles": cyc,
    }
    row = bench._core_row("Cortex-M4 (DSP)", board)
    assert row["instructions"] == 1_000 and row["cycles"]["per_inference"] == 1_600
    text = "\n".join(bench._cycles_markdown({"variant": "seed", "cores": [row]}))
    assert "| Cortex-M4 (DSP) | 1,600 | 1,500 to 1,700 | 1.60 | 0.02 ms at 80 MHz" in text
    assert "| conv0 | 1,200 (1.50) |" in text
    assert "estimated from the instruction trace" in text.splitlines()[0]
    assert "TFLM" not in text.replace("TFLM's figures are quoted in instructions only", "")


def test_estimate_of_a_real_cortex_m4_function(tmp_path: Path) -> None:
    """cycles_kernel.S built for the M4 and traced under QEMU: the estimate of its executed
    instructions equals the figure computed by hand from the Cortex-M4 TRM table."""
    tool = need_toolchain()
    board = mcu.load_board("mps2-an386")
    elf = tmp_path / "kernel.elf"
    argv = [
        tool.gcc,
        *board.cflags,
        "-O2",
        "-ffunction-sections",
        "-I",
        str(mcu.COMMON_DIR),
        str(C_DIR / "cycles_main.c"),
        str(C_DIR / "cycles_kernel.S"),
        str(mcu.COMMON_DIR / "startup.S"),
        str(mcu.COMMON_DIR / "semihost.c"),
        *mcu.link_flags(board),
        *mcu.LINK_LIBS,
        "-o",
        str(elf),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = subprocess.run(
        [
            *mcu.qemu_argv(tool, board, elf, []),
            "-d",
            "exec,nochain",
            *tool.single_step_flags(),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-500:]  # the kernel returned its non-zero sum
    symbols = mcu.function_symbols(tool, elf)
    markers = {s.address: s.name for s in symbols if s.name in mcu.MARKERS}
    (kernel,) = (s for s in symbols if s.name == "cycles_kernel")
    (image,) = trace._trace_regions(io.BytesIO(run.stderr), markers)
    code = cycles.disassemble(tool.objdump, elf)
    est = cycles.estimate(
        image.infer_steps, code, M4, lambda pc: kernel.address <= pc < kernel.address + kernel.size
    )
    # By hand, Cortex-M4 TRM r0p1 table 3-1, P = 2:
    expected = (
        (1 + 3)  # push {r4, r5, lr}: 1 + N
        + 1  # movs r3, #3
        + 1  # movs r2, #0
        + 3 * 2  # ldr r4, [r0], #4: after movs or bne, not pipelined
        + 3 * 1  # ldr r5, [r0], #4: pipelined behind the first load
        + 3 * 1  # smlad
        + 3 * 1  # subs
        + 2 * (1 + 2)  # bne taken twice: 1 + P
        + 1  # bne not taken
        + 3  # ldrd: 1 + N, N = 2
        + 1  # add r2, r4
        + 1  # adds r0, r2, r5
        + 1  # cmp r0, #0
        + 1  # it ne
        + (1 + 3 + 2)  # popne {r4, r5, pc}, taken: 1 + N + P
    )
    assert est.instructions == 24
    assert est.cycles == expected == 41
    assert (est.low, est.high) == (41 - 3, 41 + 3)
    assert not est.unclassified
