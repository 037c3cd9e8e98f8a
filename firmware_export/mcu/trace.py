"""Exact instruction counts: a QEMU ``-d exec,nochain`` single-step trace, split at the
harness's markers and mapped to the ELF's function symbols and object files; per layer."""

from __future__ import annotations

import bisect
import dataclasses
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.mcu import cycles
from firmware_export.mcu.errors import McuError
from firmware_export.mcu.memory import Image, MapSection, categorize, parse_map
from firmware_export.mcu.qemu import PIXELS, check_exit, compare_outputs, parse_result, qemu_argv
from firmware_export.mcu.toolchain import INSTALL_HINT, Toolchain, run_tool

MARKERS = ("mcu_mark_quantize", "mcu_mark_infer", "mcu_mark_done")


@dataclasses.dataclass(frozen=True)
class Symbol:
    address: int
    size: int
    name: str


def function_symbols(tool: Toolchain, elf: Path) -> list[Symbol]:
    """Function symbols with sizes (``arm-none-eabi-nm -S``), sorted by address."""
    out = run_tool([tool.nm, "-S", "--defined-only", str(elf)], elf.parent, "arm-none-eabi-nm")
    best: dict[int, tuple[bool, str, Symbol]] = {}
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) != 4 or parts[2] not in ("T", "t", "W", "w"):
            continue
        sym = Symbol(int(parts[0], 16) & ~1, int(parts[1], 16), parts[3])
        # Several names at one address (weak aliases of a handler): prefer a strong symbol,
        # then the first name in sort order, so the choice does not depend on nm's order.
        key = (parts[2] in ("W", "w"), sym.name, sym)
        old = best.get(sym.address)
        if old is None or key[:2] < old[:2]:
            best[sym.address] = key
    return sorted((v[2] for v in best.values()), key=lambda s: s.address)


class _SymbolTable:
    def __init__(self, symbols: list[Symbol], sections: list[MapSection]) -> None:
        self.symbols = symbols
        self.starts = [s.address for s in symbols]
        text = sorted(
            (s for s in sections if s.output == ".text" and s.size), key=lambda s: s.address
        )
        self.sec_starts = [s.address for s in text]
        self.sections = text

    def name(self, pc: int) -> str:
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0:
            s = self.symbols[i]
            if pc < s.address + max(s.size, 2):
                return s.name
        return f"0x{pc:08x}"

    def category(self, pc: int) -> str:
        i = bisect.bisect_right(self.sec_starts, pc) - 1
        if i >= 0 and pc < self.sections[i].address + self.sections[i].size:
            return categorize(self.sections[i].obj)
        return "unknown"


_TRACE_PC = re.compile(rb"\[[0-9a-fA-F]+/([0-9a-fA-F]+)/")


#: A step of the trace: (previous PC, PC, next PC); -1 where the trace has none. The cycle
#: estimate needs both neighbours: the next PC tells a taken branch from one not taken, the
#: previous one whether a load or store pipelines behind another (see ``cycles``).
Step = tuple[int, int, int]


@dataclasses.dataclass
class TracedImage:
    """The executed PCs of one image: PC -> number of executions, and the same executions as
    steps with their neighbours (``*_steps``)."""

    quantize: Counter[int]
    infer: Counter[int]
    #: One counter per call made by the root function (``<prefix>_infer``): the layers.
    calls: list[Counter[int]]
    quantize_steps: Counter[Step] = dataclasses.field(default_factory=Counter)
    infer_steps: Counter[Step] = dataclasses.field(default_factory=Counter)
    call_steps: list[Counter[Step]] = dataclasses.field(default_factory=list)


def _trace_regions(
    stream: Any,
    markers: dict[int, str],
    root: tuple[int, int] | None = None,
    other_lines: list[str] | None = None,
) -> list[TracedImage]:
    """Split the executed PCs of a ``-d exec`` trace into per-image regions.

    ``markers`` maps the entry addresses of the harness's marker functions to their names:
    ``mcu_mark_quantize`` opens an image and its quantize region, ``mcu_mark_infer`` the infer
    region, ``mcu_mark_done`` closes it. Inside the infer region, everything executed between
    two instructions of the ``root`` function (address range ``[start, end)``) is one call,
    with whatever that callee calls in turn. The markers' own instructions and the harness
    code around the calls are included; the caller filters them out by object file.
    Lines that are not trace lines go to ``other_lines`` (QEMU's own messages).

    Each PC is counted with its neighbours in the whole trace, as a :data:`Step`; a PC is
    handled once the next one is read, so the last PC of a chunk waits for the next chunk.
    """
    images: list[dict[str, Any]] = []
    current: Counter[tuple[bytes, bytes, bytes]] | None = None
    call: Counter[tuple[bytes, bytes, bytes]] | None = None
    rest = b""
    tags: dict[bytes, str] = {}
    # The PC before the pending one, and the pending one (b"": none).
    carry = [b""]
    eof = False
    while not eof:
        chunk = stream.read1(1 << 22) if hasattr(stream, "read1") else stream.read(1 << 22)
        eof = not chunk
        chunk = rest + chunk
        cut = chunk.rfind(b"\n") + 1
        rest = chunk[cut:]
        pcs = _TRACE_PC.findall(chunk, 0, cut)
        if other_lines is not None and chunk.count(b"\n", 0, cut) != len(pcs):
            other_lines.extend(
                ln.decode(errors="replace")
                for ln in chunk[:cut].splitlines()
                if ln.strip() and not _TRACE_PC.search(ln)
            )
        if pcs and not tags:
            # QEMU prints the PC zero-padded to its own width (8 digits in 7.2, 16 later).
            width = len(pcs[0])
            if root is not None:
                tags = {f"{a:0{width}x}".encode(): "root" for a in range(root[0], root[1], 2)}
            tags.update({f"{a:0{width}x}".encode(): name for a, name in markers.items()})
        seq = carry + pcs
        if eof:
            seq.append(b"")
        # seq[1:-1] are handled now: each has its previous and next PC in seq.
        prevs, body, nexts = seq[:-2], seq[1:-1], seq[2:]
        carry = seq[-2:]
        start = 0
        hits = [i for i, pc in enumerate(body) if pc in tags]
        for i in [*hits, len(body)]:
            if i > start:
                segment = list(zip(prevs[start:i], body[start:i], nexts[start:i], strict=True))
                if current is not None:
                    current.update(segment)
                if call is not None:
                    call.update(segment)
            if i == len(body):
                break
            pc = body[i]
            tag = tags[pc]
            call = None
            if tag == "mcu_mark_quantize":
                images.append({"quantize": Counter(), "infer": Counter(), "calls": []})
                current = images[-1]["quantize"]
            elif tag == "mcu_mark_infer" and images:
                current = images[-1]["infer"]
            elif tag != "root":
                current = None
            if current is not None:
                current[(prevs[i], pc, nexts[i])] += 1
            if tag == "root" and images and current is images[-1]["infer"]:
                call = Counter()
                images[-1]["calls"].append(call)
            start = i + 1

    def steps(c: Counter[tuple[bytes, bytes, bytes]]) -> Counter[Step]:
        out: Counter[Step] = Counter()
        for (prev, pc, nxt), n in c.items():
            out[(int(prev, 16) if prev else -1, int(pc, 16), int(nxt, 16) if nxt else -1)] += n
        return out

    def pcs_of(c: Counter[Step]) -> Counter[int]:
        out: Counter[int] = Counter()
        for (_, pc, _), n in c.items():
            out[pc] += n
        return out

    result = []
    for img in images:
        quantize, infer = steps(img["quantize"]), steps(img["infer"])
        calls = [steps(c) for c in img["calls"] if c]
        result.append(
            TracedImage(
                pcs_of(quantize),
                pcs_of(infer),
                [pcs_of(c) for c in calls],
                quantize,
                infer,
                calls,
            )
        )
    return result


def count_instructions(
    tool: Toolchain,
    image: Image,
    raw: np.ndarray,
    expected: np.ndarray,
    timeout: float,
    run_dir: Path,
    root_function: str = "lenet_infer",
) -> dict[str, Any]:
    """Exact executed-instruction counts for each image in ``raw`` (streamed), per function
    and per call made by ``root_function`` (the layers).

    QEMU runs one guest instruction per translation block without chaining and logs every
    block it executes (``-d exec,nochain``); the PCs between the harness markers are mapped
    to the ELF's function symbols. The harness's own instructions (the call sequence) are
    excluded; the library and the runtime helpers it calls (libgcc, newlib) are counted.
    """
    output_size = expected.shape[1]
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, PIXELS)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "mcu_in.bin").write_bytes(raw.tobytes())
    out_path = run_dir / "mcu_out.bin"
    out_path.unlink(missing_ok=True)
    symbols = function_symbols(tool, image.elf)
    sections, _ = parse_map(image.map_file)
    table = _SymbolTable(symbols, sections)
    markers = {s.address: s.name for s in symbols if s.name in MARKERS}
    if set(markers.values()) != set(MARKERS):
        raise McuError(f"{image.elf.name}: the harness markers are missing from the symbols")
    root = next(((s.address, s.address + s.size) for s in symbols if s.name == root_function), None)
    model = cycles.model_for(image.board.core)
    code = cycles.disassemble(tool.objdump, image.elf) if model is not None else {}
    argv = [
        *qemu_argv(tool, image.board, image.elf, ["stream"]),
        "-d",
        "exec,nochain",
        *tool.single_step_flags(),
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise McuError(f"cannot run {tool.qemu} ({exc}); {INSTALL_HINT}") from None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    stdout_chunks: list[bytes] = []
    other: list[str] = []
    reader = threading.Thread(
        target=lambda: stdout_chunks.append(proc.stdout.read()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        regions = _trace_regions(proc.stderr, markers, root, other)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    seconds = time.monotonic() - t0
    if timed_out.is_set():
        raise McuError(
            f"{image.board.name}: the traced QEMU run did not finish within "
            f"{timeout:.0f} s (raise --timeout)"
        )
    stdout = b"".join(stdout_chunks).decode(errors="replace")
    values = parse_result(stdout)
    check_exit(image.board, proc.returncode, values, stdout, "\n".join(other[-20:]))
    data = out_path.read_bytes() if out_path.is_file() else b""
    if len(data) != raw.shape[0] * output_size:
        raise McuError(f"{image.board.name}: the traced run wrote {len(data)} output bytes")
    got = np.frombuffer(data, dtype=np.int8).reshape(-1, output_size)
    check = compare_outputs(got, expected)
    if check["mismatched_images"]:
        raise McuError(
            f"{image.board.name}: the traced run gave outputs that differ from the "
            f"expected ones (image {check['first_mismatch']})"
        )
    if len(regions) != len(raw):
        raise McuError(
            f"{image.board.name}: the trace holds {len(regions)} inferences, expected {len(raw)}"
        )

    def library(pc: int) -> bool:
        return table.category(pc) != "harness"

    def tally(pcs: Counter[int], steps: Counter[Step]) -> dict[str, Any]:
        funcs: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        for pc, n in pcs.items():
            cat = table.category(pc)
            if cat == "harness":
                continue
            funcs[table.name(pc)] += n
            cats[cat] += n
        out: dict[str, Any] = {
            "total": sum(funcs.values()),
            "per_function": dict(sorted(funcs.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_category": dict(sorted(cats.items())),
        }
        if model is not None:
            out["cycles"] = cycles.estimate(steps, code, model, library)
        return out

    per_image = []
    for reg in regions:
        calls = [tally(c, s) for c, s in zip(reg.calls, reg.call_steps, strict=True)]
        per_image.append(
            {
                "quantize": tally(reg.quantize, reg.quantize_steps),
                "infer": tally(reg.infer, reg.infer_steps),
                # The calls made by <prefix>_infer, in order (harness-only runs dropped).
                "calls": [c for c in calls if c["total"]],
            }
        )
    return {
        "images": per_image,
        "seconds": seconds,
        "method": f"qemu-system-arm {tool.qemu_version[0]}.{tool.qemu_version[1]} "
        f"-d exec,nochain {' '.join(tool.single_step_flags())}, "
        "PCs mapped with arm-none-eabi-nm -S",
        "model": model,
    }


def per_layer(calls: list[dict[str, Any]], layers: Any) -> list[dict[str, Any]] | None:
    """Instructions per layer: the calls of ``<prefix>_infer`` matched, in order, to the layers
    of export.json. None when they do not pair up one to one."""
    if not isinstance(layers, list) or len(layers) != len(calls) or not calls:
        return None
    out = []
    for layer, call in zip(layers, calls, strict=True):
        if not isinstance(layer, dict):
            return None
        macs = layer.get("macs")
        macs = macs if isinstance(macs, int) and not isinstance(macs, bool) else None
        out.append(
            {
                "name": layer.get("name"),
                "kernel": layer.get("kernel"),
                "ops": layer.get("ops"),
                "macs": macs,
                "instructions": call["total"],
                "per_mac": round(call["total"] / macs, 3) if macs else None,
                "per_function": call["per_function"],
            }
        )
    return out
