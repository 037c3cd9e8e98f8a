"""Cycles per inference, *estimated from the instruction trace*: QEMU counts instructions, not
cycles, so each executed instruction is classified from the ELF's disassembly and charged the
cycles that the core's Technical Reference Manual gives for its class.

The model is data: :data:`MODELS` holds one table per core (class -> :class:`Cost`), taken from
the Cortex-M4 TRM r0p1, section 3.3 (instruction set summary, load/store timings) and the
Cortex-M0 TRM r0p0, section 3.3. The Cortex-M3 uses the M4 table without the DSP classes and
with the multiply rows of the Cortex-M3 TRM r2p1, section 3.3. The Cortex-M7 (dual issue,
caches, branch prediction) is not modelled. Zero wait states throughout; what the model ignores
is listed in ``docs/performance.md``, section "Cycles (estimated from the instruction trace)".

The only logic outside the tables is the context of one executed instruction, known exactly
from the trace (:func:`class_of`): a branch (or an instruction that writes the PC) was taken
when the next executed PC is not ``pc + size``, and on the M4 a single load or store that
follows another one pipelines with it.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from firmware_export.mcu.toolchain import run_tool

#: How every figure of this module is labelled wherever it is shown.
LABEL = "estimated from the instruction trace"

#: Condition suffixes ("al", always, is no condition).
CONDITIONS = frozenset(
    ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le")
)

# --- classification: mnemonic -> kind ------------------------------------------------------

#: Base mnemonic -> kind. Kinds whose name is also a cost class are charged directly; the
#: flow kinds (:data:`FLOW_KINDS`) and ``load_store`` also depend on the neighbours.
_KINDS: dict[str, str] = {}


def _kinds(kind: str, names: str) -> None:
    for name in names.split():
        _KINDS[name] = kind


_kinds(
    "alu",
    "adc add and asr bic eor lsl lsr mov mvn orn orr ror rrx rsb sbc sub neg cmp cmn tst teq "
    "adr addw subw movw movt cpy bfc bfi sbfx ubfx clz rev rev16 revsh rbit sxtb sxth uxtb "
    "uxth sxtab sxtah uxtab uxtah ssat usat",
)
# ARMv7E-M DSP extension (absent on the M3 and M0): SIMD arithmetic, packing, saturation.
_kinds(
    "dsp_alu",
    "sxtb16 uxtb16 sxtab16 uxtab16 ssat16 usat16 pkhbt pkhtb sel usad8 usada8 qadd qsub qdadd "
    "qdsub "
    + " ".join(
        p + op
        for p in ("s", "q", "sh", "u", "uq", "uh")
        for op in ("add16", "sub16", "add8", "sub8", "asx", "sax")
    ),
)
_kinds("mul", "mul")
_kinds("mla", "mla mls")
_kinds("mul_long", "umull smull")
_kinds("mac_long", "umlal smlal umaal")
_kinds(
    "dsp_mac",
    "smlad smladx smlsd smlsdx smuad smuadx smusd smusdx smlald smlaldx smlsld smlsldx smmul "
    "smmulr smmla smmlar smmls smmlsr smlabb smlabt smlatb smlatt smlawb smlawt smulbb smulbt "
    "smultb smultt smulwb smulwt smlalbb smlalbt smlaltb smlaltt",
)
_kinds("div", "sdiv udiv")
_kinds(
    "load_store",
    "ldr ldrb ldrh ldrsb ldrsh ldrt ldrbt ldrht ldrsbt ldrsht ldrex ldrexb ldrexh "
    "str strb strh strt strbt strht strex strexb strexh",
)
_kinds("load_store_double", "ldrd strd")
_kinds("load_store_multiple", "ldm ldmia ldmfd ldmdb ldmea stm stmia stmea stmdb stmfd push pop")
_kinds("branch", "b cbz cbnz")
_kinds("call", "bl")
_kinds("branch_reg", "bx blx")
_kinds("table_branch", "tbb tbh")
_kinds("system", "mrs msr dmb dsb isb")
_kinds("hint", "nop yield wfe wfi sev pld pldw pli cpsid cpsie")

#: Data-processing mnemonics that take an ``s`` suffix (set flags).
_FLAG_SETTING = frozenset(
    [
        *("adc", "add", "and", "asr", "bic", "eor", "lsl", "lsr", "mov", "mvn", "orn", "orr"),
        *("ror", "rrx", "rsb", "sbc", "sub", "neg", "mul", "mla", "umull", "smull", "umlal"),
        "smlal",
    ]
)
_BY_LENGTH = sorted(_KINDS, key=len, reverse=True)
_REGISTER = re.compile(r"r\d+|sl|fp|ip|sp|lr|pc")
_IT = re.compile(r"it[te]{0,3}")

#: Kinds that change the flow when they execute (their cost depends on being taken).
FLOW_KINDS = frozenset(
    ["branch", "call", "branch_reg", "table_branch", "pc_write", "load_pc", "pop_pc"]
)


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One decoded instruction of the ELF."""

    address: int
    size: int
    mnemonic: str  #: as objdump prints it, without the ``.n``/``.w`` width suffix
    operands: str
    kind: str  #: see :data:`_KINDS`; "unclassified" when the model has no row for it
    registers: int = 0  #: N, the registers of a load/store multiple
    conditional: bool = False  #: has a condition (B<cc>, CBZ, an IT-block instruction)
    #: A single load or store after which the next one can pipeline (not STR with a
    #: register offset: "nothing can be pipelined after the store", M4 TRM 3.3.2).
    pipelines_next: bool = False
    #: The register a single load writes ("" otherwise), and the registers a single load or
    #: store addresses with: a load does not pipeline with the next access when that access
    #: computes its address from the loaded register.
    loads: str = ""
    address_registers: frozenset[str] = frozenset()


def _split(mnemonic: str) -> tuple[str, bool] | None:
    """(base mnemonic, has a condition) of a mnemonic as objdump prints it, or None."""
    for base in _BY_LENGTH:
        if not mnemonic.startswith(base):
            continue
        rest = mnemonic[len(base) :]
        if rest == "":
            return base, base in ("cbz", "cbnz")
        if rest in CONDITIONS:
            return base, True
        if base in _FLAG_SETTING and rest[:1] == "s" and (rest == "s" or rest[1:] in CONDITIONS):
            return base, rest != "s"
    return None


def _registers(operands: str) -> list[str]:
    """The registers of a ``{...}`` list (ranges such as ``r4-r7`` expanded)."""
    m = re.search(r"\{([^}]*)\}", operands)
    if m is None:
        return []
    out: list[str] = []
    for item in (x.strip() for x in m.group(1).split(",")):
        r = re.fullmatch(r"r(\d+)-r(\d+)", item)
        if r:
            out.extend(f"r{i}" for i in range(int(r[1]), int(r[2]) + 1))
        else:
            out.append(item)
    return out


def classify(mnemonic: str, operands: str, address: int = 0, size: int = 2) -> Instruction:
    """Decode one disassembled instruction (objdump's mnemonic and operand fields) at
    ``address`` into its kind, independent of the core; the core's table gives the cycles."""
    mnemonic = mnemonic.strip().lower().split(".")[0]
    operands = operands.split(";")[0].split("@")[0].strip().lower()
    first = operands.split(",")[0].strip()
    if _IT.fullmatch(mnemonic):
        return Instruction(address, size, mnemonic, operands, "it")
    split = _split(mnemonic)
    if split is None:
        return Instruction(address, size, mnemonic, operands, "unclassified")
    base, conditional = split
    kind = _KINDS[base]
    registers = 0
    pipelines_next = False
    loads = ""
    addressing: frozenset[str] = frozenset()
    if kind == "alu" and first == "pc":
        kind = "pc_write"
    elif kind == "load_store":
        if base.startswith("ldr") and first == "pc":
            kind = "load_pc"
        else:
            m = re.search(r"\[([^\]]*)\]", operands)
            inside = [x.strip() for x in m.group(1).split(",")] if m else []
            addressing = frozenset(x for x in inside if _REGISTER.fullmatch(x))
            register_offset = len(inside) > 1 and _REGISTER.fullmatch(inside[1]) is not None
            pipelines_next = not (base.startswith("str") and register_offset)
            loads = first if base.startswith("ldr") else ""
    elif kind == "load_store_multiple":
        regs = _registers(operands)
        registers = len(regs)
        if "pc" in regs and (base.startswith("ldm") or base == "pop"):
            kind = "pop_pc"
    return Instruction(
        address,
        size,
        mnemonic,
        operands,
        kind,
        registers,
        conditional,
        pipelines_next,
        loads,
        addressing,
    )


_OBJDUMP_LINE = re.compile(
    r"^\s*([0-9a-f]+):\s+((?:[0-9a-f]{4}\s)+)\s*([a-z][\w.]*)(?:\s+(.*))?$", re.MULTILINE
)


def parse_disassembly(text: str) -> dict[int, Instruction]:
    """Address -> :class:`Instruction` for every instruction of ``objdump -d`` output
    (data such as ``.word`` literal pools is skipped)."""
    out: dict[int, Instruction] = {}
    for m in _OBJDUMP_LINE.finditer(text):
        address = int(m.group(1), 16)
        size = 2 * len(m.group(2).split())
        out[address] = classify(m.group(3), m.group(4) or "", address, size)
    return out


def disassemble(objdump: str, elf: Path) -> dict[int, Instruction]:
    """Decode every instruction of ``elf`` once (``arm-none-eabi-objdump -d``)."""
    return parse_disassembly(
        run_tool([objdump, "-d", str(elf)], elf.parent, "arm-none-eabi-objdump")
    )


# --- the timing tables ---------------------------------------------------------------------


class Cost(NamedTuple):
    """Cycles of one class: ``fixed + per_register * N + refill * P``. ``fixed`` is the value
    the estimate uses; ``low``/``high`` bound it where the TRM gives a data-dependent range
    (SDIV 2 to 12)."""

    fixed: int
    per_register: int = 0
    refill: int = 0
    low: int | None = None
    high: int | None = None


@dataclasses.dataclass(frozen=True)
class CoreModel:
    """The timing table of one core, with its pipeline-refill assumption and stated clocks."""

    core: str
    source: str
    table: Mapping[str, Cost]
    #: P, the pipeline refill of a taken branch: (assumed, low, high).
    refill: tuple[int, int, int]
    #: Neighbouring single loads and stores pipeline (the second one takes 1 cycle).
    pipelined_load_store: bool
    clocks_mhz: tuple[int, ...]
    assumptions: tuple[str, ...]


_M4_TABLE: dict[str, Cost] = {
    "alu": Cost(1),
    "it": Cost(1),
    "hint": Cost(1),
    "system": Cost(2, low=1),  # MRS/MSR 1 or 2; barriers 1 + B (B not modelled)
    "mul": Cost(1),
    "mla": Cost(1),
    "mul_long": Cost(1),
    "mac_long": Cost(1),
    "dsp_alu": Cost(1),
    "dsp_mac": Cost(1),
    "div": Cost(12, low=2),  # 2 to 12, early termination on the operands
    "load_store": Cost(2),
    "load_store_pipelined": Cost(1),
    "load_store_double": Cost(3),  # 1 + N, N = 2
    "load_store_multiple": Cost(1, per_register=1),
    "pop_pc": Cost(1, per_register=1, refill=1),
    "load_pc": Cost(2, refill=1),
    "pc_write": Cost(1, refill=1),
    "branch": Cost(1, refill=1),
    "call": Cost(1, refill=1),
    "branch_reg": Cost(1, refill=1),
    "table_branch": Cost(2, refill=1),
    "not_taken": Cost(1),
    "unclassified": Cost(1),
}

_M3_TABLE: dict[str, Cost] = {
    **{k: v for k, v in _M4_TABLE.items() if not k.startswith("dsp_")},
    "mla": Cost(2),
    "mul_long": Cost(5, low=3),  # 3 to 5
    "mac_long": Cost(7, low=4),  # 4 to 7
}

_M0_TABLE: dict[str, Cost] = {
    "alu": Cost(1),
    "hint": Cost(1),
    "system": Cost(4),  # MRS, MSR, ISB, DSB, DMB
    "mul": Cost(1),  # MULS: 1 with the fast multiplier, 32 with the small one
    "load_store": Cost(2),
    "load_store_multiple": Cost(1, per_register=1),
    "pop_pc": Cost(4, per_register=1),
    "pc_write": Cost(3),
    "branch": Cost(3),
    "call": Cost(4),  # BL
    "branch_reg": Cost(3),  # BX, BLX
    "not_taken": Cost(1),
    "unclassified": Cost(1),
}

_COMMON = (
    "zero wait states for flash and RAM, no bus contention",
    "a conditional instruction inside an IT block that fails its condition is charged as if it "
    "executed, unless it writes the PC (then the trace shows it was not taken: 1 cycle)",
    "unclassified instructions (none expected in the engine) are charged 1 cycle and listed",
)

MODELS: dict[str, CoreModel] = {
    "Cortex-M4": CoreModel(
        core="Cortex-M4",
        source="Arm Cortex-M4 TRM r0p1, section 3.3 (instruction set summary, load/store timings)",
        table=_M4_TABLE,
        refill=(2, 1, 3),
        pipelined_load_store=True,
        clocks_mhz=(80, 168),
        assumptions=(
            *_COMMON,
            "P (pipeline refill of a taken branch) = 2, the middle of the TRM's 1 to 3; the "
            "range uses 1 and 3",
            "SDIV/UDIV = 12 cycles, the upper end of 2 to 12; the range uses 2",
            "a single load or store directly after another one (not after an STR with a "
            "register offset) takes 1 cycle instead of 2",
            "branch folding, branch speculation and the extra cycle of an address depending on "
            "the preceding instruction or of a literal load contending with the fetch are "
            "ignored",
        ),
    ),
    "Cortex-M3": CoreModel(
        core="Cortex-M3",
        source="the Cortex-M4 table without the DSP classes, with the multiply rows of the "
        "Arm Cortex-M3 TRM r2p1, section 3.3",
        table=_M3_TABLE,
        refill=(2, 1, 3),
        pipelined_load_store=True,
        clocks_mhz=(24,),
        assumptions=(
            *_COMMON,
            "P = 2 (range 1 to 3), as on the M4",
            "MLA/MLS 2, UMULL/SMULL 5 (3 to 5), UMLAL/SMLAL 7 (4 to 7), SDIV/UDIV 12 (2 to "
            "12): the upper ends of the TRM's data-dependent ranges",
            "24 MHz: the highest clock of the STM32F100RB on the stm32vldiscovery board",
        ),
    ),
    "Cortex-M0": CoreModel(
        core="Cortex-M0",
        source="Arm Cortex-M0 TRM r0p0, section 3.3 (instruction set summary)",
        table=_M0_TABLE,
        refill=(0, 0, 0),  # the M0 table gives whole cycle counts for taken branches
        pipelined_load_store=False,
        clocks_mhz=(16, 48),
        assumptions=(
            *_COMMON,
            "the fast (single-cycle) multiplier: MULS 1 cycle; the small multiplier "
            "configuration takes 32",
            "taken branches 3 cycles (BL 4, POP with PC 4 + N), not taken 1",
        ),
    ),
}

#: Cores with no model, and why.
NOT_MODELLED = {
    "Cortex-M7": "the Cortex-M7 issues two instructions per cycle and has branch prediction "
    "and caches; a per-instruction table cannot describe it, so it is not modelled",
}


def model_for(core: str) -> CoreModel | None:
    """The model of a board's core, or None. A trailing ``F`` (the FPU option, Cortex-M4F)
    keeps the integer timings; any other suffix (Cortex-M0+) is another core."""
    return MODELS.get(core.removesuffix("F"))


# --- the estimate --------------------------------------------------------------------------


def class_of(
    code: Mapping[int, Instruction], model: CoreModel, prev: int, pc: int, nxt: int
) -> tuple[str, int]:
    """(cost class, N) of the instruction at ``pc`` executed between ``prev`` and ``nxt``
    (-1: none). Flow instructions are taken unless conditional and followed by
    ``pc + size``; a single load or store pipelines behind the one executed just before."""
    insn = code.get(pc)
    if insn is None or insn.kind not in model.table:
        return "unclassified", 0
    if insn.kind in FLOW_KINDS and insn.conditional and nxt == pc + insn.size:
        return "not_taken", 0
    if insn.kind == "load_store" and model.pipelined_load_store:
        before = code.get(prev)
        if (
            before is not None
            and before.kind == "load_store"
            and before.pipelines_next
            and before.loads not in insn.address_registers
        ):
            return "load_store_pipelined", 0
    return insn.kind, insn.registers


@dataclasses.dataclass
class Estimate:
    """Cycles of a set of executed instructions under one model."""

    cycles: int = 0
    low: int = 0
    high: int = 0
    instructions: int = 0
    #: class -> [instructions, cycles]
    by_class: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    #: mnemonic -> executions, for instructions the model has no class for
    unclassified: Counter[str] = dataclasses.field(default_factory=Counter)


def estimate(
    steps: Mapping[tuple[int, int, int], int],
    code: Mapping[int, Instruction],
    model: CoreModel,
    keep: Callable[[int], bool] | None = None,
) -> Estimate:
    """Cycles of the executed ``steps`` ((prev, pc, next) -> executions), counting only the
    PCs that ``keep`` accepts."""
    est = Estimate()
    p, p_low, p_high = model.refill
    for (prev, pc, nxt), n in steps.items():
        if keep is not None and not keep(pc):
            continue
        cls, regs = class_of(code, model, prev, pc, nxt)
        cost = model.table[cls]
        base = cost.per_register * regs
        cycles = cost.fixed + base + cost.refill * p
        low = (cost.fixed if cost.low is None else cost.low) + base + cost.refill * p_low
        high = (cost.fixed if cost.high is None else cost.high) + base + cost.refill * p_high
        est.cycles += n * cycles
        est.low += n * low
        est.high += n * high
        est.instructions += n
        row = est.by_class.setdefault(cls, [0, 0])
        row[0] += n
        row[1] += n * cycles
        if cls == "unclassified":
            insn = code.get(pc)
            est.unclassified[insn.mnemonic if insn else "<not disassembled>"] += n
    return est


def milliseconds(cycles: int, model: CoreModel) -> list[dict[str, Any]]:
    """Cycles as milliseconds at the model's stated clocks."""
    return [{"clock_mhz": f, "ms": round(cycles / (f * 1000.0), 3)} for f in model.clocks_mhz]


def milliseconds_text(ms: list[dict[str, Any]]) -> str:
    """``milliseconds()``'s figures as one phrase, e.g. "7.60 ms at 80 MHz, 3.62 ms at 168 MHz"."""
    return ", ".join(f"{m['ms']:.2f} ms at {m['clock_mhz']} MHz" for m in ms)


def describe(model: CoreModel) -> dict[str, Any]:
    """The model as JSON: its source, assumptions and table (cycles as formulas)."""

    def formula(c: Cost) -> str:
        fixed = str(c.fixed) if c.low is None else f"{c.fixed} ({c.low} to {c.high or c.fixed})"
        parts = [fixed] + ["N"] * c.per_register + ["P"] * c.refill
        return " + ".join(parts)

    return {
        "core": model.core,
        "source": model.source,
        "pipeline_refill_P": {"assumed": model.refill[0], "range": list(model.refill[1:])}
        if model.refill[0]
        else None,
        "assumptions": list(model.assumptions),
        "table": {k: formula(v) for k, v in model.table.items()},
    }


def summarize(
    core: str,
    model: CoreModel | None,
    infer: Estimate | None,
    quantize: Estimate | None,
    calls: list[Estimate],
    layers: list[dict[str, Any]] | None,
    macs: int | None,
) -> dict[str, Any]:
    """The ``cycles`` section of a board's report: per inference and per layer (``layers``:
    the instruction counts' ``per_layer``, matched one to one with ``calls``), per MAC and in
    milliseconds at the model's clocks; every figure labelled :data:`LABEL`."""
    if model is None or infer is None:
        reason = NOT_MODELLED.get(core, f"no timing model for the {core}")
        return {"label": LABEL, "modelled": False, "core": core, "reason": reason}
    per_layer = None
    if layers is not None and len(layers) == len(calls):
        per_layer = [
            {
                "name": layer.get("name"),
                "kernel": layer.get("kernel"),
                "macs": layer.get("macs"),
                "instructions": est.instructions,
                "cycles": est.cycles,
                "cycles_range": [est.low, est.high],
                "per_mac": round(est.cycles / layer["macs"], 3) if layer.get("macs") else None,
            }
            for layer, est in zip(layers, calls, strict=True)
        ]
    return {
        "label": LABEL,
        "modelled": True,
        "core": core,
        "per_inference": infer.cycles,
        "per_inference_range": [infer.low, infer.high],
        "instructions": infer.instructions,
        "cycles_per_instruction": round(infer.cycles / infer.instructions, 3)
        if infer.instructions
        else None,
        "per_mac": round(infer.cycles / macs, 3) if macs else None,
        "ms": milliseconds(infer.cycles, model),
        "quantize": quantize.cycles if quantize is not None else None,
        "per_layer": per_layer,
        "by_class": {
            cls: {"instructions": n, "cycles": c} for cls, (n, c) in sorted(infer.by_class.items())
        },
        "unclassified": dict(sorted(infer.unclassified.items())),
        "model": describe(model),
    }
