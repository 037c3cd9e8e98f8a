"""``lenet-edge bench``: every figure the README quotes, measured in one run on this machine.

The bench drives the real commands (``train``, ``quantize``, ``verify``, ``export-c``,
``mcu-test``) as a user would, times them, and collects the JSON each one writes. Host
throughput is compared as ratios against LiteRT's default (XNNPACK) kernels measured in the
same run, because absolute times on a shared machine are noisy.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenet_edge import __version__
from lenet_edge.errors import LenetEdgeError
from lenet_edge.fsutil import atomic_write_json, atomic_write_text
from lenet_edge.quantize import quant_json_path

#: LeCun et al. 1998: LeNet-5 without distortions, 0.95 % test error.
LECUN_1998_ACCURACY = 0.9905
#: TFLM reference figures (not measured by this bench; see the README for the source).
TFLM_PEER = {
    "source": "measured outside lenet-edge on the default seed model (SHA-256 80cb134c...) "
    "with TFLM at upstream commit 90b983c built for the Cortex-M4 (soft-float) and run on "
    "QEMU mps2-an386, exact instruction counts per inference; TFLM's outputs equal those of "
    "the TFLM Python interpreter, and the exported tflm/lenet_tflm_example.cc compiles and "
    "links against real TFLM on the x86-64 host with -Wall -Werror (lenet_tflm_setup() "
    "returns 0)",
    "model_sha256_prefix": "80cb134c",
    "tflm_commit": "90b983c",
    "instructions_cmsis_nn": 4_385_105,
    "instructions_reference_kernels": 33_600_000,
    "arena_bytes": 13_108,
    "arena_bytes_reference_kernels": 12_964,
    "instructions_standalone_engine": 429_890,
}


@dataclass
class Bench:
    """Runs the commands of one bench and keeps their wall times."""

    out: Path
    quiet: bool = False
    data_dir: str | None = None
    walls: dict[str, float] = field(default_factory=dict)

    def run(self, key: str, args: Sequence[str]) -> float:
        """Run ``lenet-edge ARGS``; return (and record under ``key``) its wall time."""
        argv = [sys.executable, "-m", "lenet_edge", *args]
        env = dict(os.environ)
        if self.data_dir:  # every command that loads MNIST reads it (as --data-dir)
            env["LENET_EDGE_DATA"] = self.data_dir
        log = self.out / "logs" / f"{key.replace('/', '_')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if not self.quiet:
            print(f"bench: {key}: lenet-edge {shlex.join(args)}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
            last = lines[-1] if lines else "no output"
            raise LenetEdgeError(
                f"bench step {key} failed (exit {proc.returncode}): {last}; see {log}"
            )
        self.walls[key] = round(wall, 2)
        if not self.quiet:
            print(f"bench: {key}: {wall:.1f}s", file=sys.stderr, flush=True)
        return wall


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _cmd_output(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "not found"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else "?"


def describe_machine() -> dict[str, Any]:
    """CPU, cores, memory, OS and tool versions of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    from lenet_edge.train import package_versions

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "gcc": _cmd_output(["gcc", "--version"]),
        "arm-none-eabi-gcc": _cmd_output(["arm-none-eabi-gcc", "--version"]),
        "qemu-system-arm": _cmd_output(["qemu-system-arm", "--version"]),
    }


def _board(mcu: dict[str, Any], name: str) -> dict[str, Any]:
    for b in mcu["boards"]:
        if b["board"] == name:
            return dict(b)
    raise LenetEdgeError(f"bench: mcu-test did not report board {name}")


def _core_row(label: str, board: dict[str, Any]) -> dict[str, Any]:
    ins = board["instructions"]
    return {
        "label": label,
        "board": board["board"],
        "core": board["core"],
        "dsp": board["dsp_path_enabled"],
        "instructions": ins["per_inference"],
        "per_mac": ins["per_mac"],
        "per_layer": [
            {
                k: layer[k]
                for k in ("name", "kernel", "instructions", "per_mac", "macs")
                if k in layer
            }
            for layer in ins.get("per_layer") or []
        ],
        "code_bytes": board["memory"]["flash"]["library"],
        "peak_ram": board["memory"]["peak_ram"],
        "stack_high_water": board["memory"]["stack"]["high_water"],
        "cycles": _cycles_row(board.get("cycles")),
    }


def _cycles_row(cyc: dict[str, Any] | None) -> dict[str, Any] | None:
    """mcu-test's cycle estimate of one board, kept apart from the (exact) instruction counts."""
    if not cyc:
        return None
    if not cyc["modelled"]:
        return {"label": cyc["label"], "modelled": False, "reason": cyc["reason"]}
    return {
        "label": cyc["label"],
        "modelled": True,
        "model": cyc["model"]["core"],
        "per_inference": cyc["per_inference"],
        "range": cyc["per_inference_range"],
        "per_mac": cyc["per_mac"],
        "ms": cyc["ms"],
        "per_layer": [
            {k: layer[k] for k in ("name", "cycles", "per_mac")}
            for layer in cyc.get("per_layer") or []
        ],
    }


def run_variant(b: Bench, variant: str, full: bool, epochs: int | None) -> dict[str, Any]:
    """Train -> quantize -> verify -> export-c for ``variant``; stream 10k images on the M4."""
    run = b.out / "runs" / variant
    model, tfl, cdir = run / "model.keras", run / "model_int8.tflite", run / "c"
    extra = ["--epochs", str(epochs)] if epochs else []
    b.run(f"{variant}/train", ["train", "--variant", variant, "--out", str(run), "-q", *extra])
    b.run(f"{variant}/quantize", ["quantize", str(model), "--out", str(tfl), "-q"])
    b.run(
        f"{variant}/verify",
        [
            "verify",
            str(tfl),
            "--reference",
            str(model),
            "--json",
            str(run / "verify.json"),
            "--no-arena",
            "-q",
        ],
    )
    b.run(f"{variant}/export-c", ["export-c", str(tfl), "--out", str(cdir), "-q"])
    b.run(
        f"{variant}/mcu-stream",
        [
            "mcu-test",
            str(cdir),
            "--board",
            "mps2-an386",
            "--images",
            "all",
            "--count-images",
            "0",
            "--json",
            str(run / "mcu_stream.json"),
            "-q",
        ],
    )
    train = _read(run / "train.json")
    verify = _read(run / "verify.json")
    stream = _board(_read(run / "mcu_stream.json"), "mps2-an386")
    steps = ("train", "quantize", "verify", "export-c")
    result: dict[str, Any] = {
        "variant": variant,
        "float_accuracy": train["test_accuracy"],
        "int8_accuracy": verify["results"]["litert"]["accuracy"],
        "agreement": verify["results"]["litert"]["vs_reference"]["top1_agreement"],
        "on_mcu_accuracy": stream.get("on_mcu_accuracy"),
        "on_mcu_bit_exact": stream["passed"],
        "on_mcu_images": stream["check"]["images"],
        "best_epoch": train["best_epoch"],
        "epochs": train["epochs_run"],
        "walls": {s: b.walls[f"{variant}/{s}"] for s in steps},
        "time_to_deployable": round(sum(b.walls[f"{variant}/{s}"] for s in steps), 1),
        "tflite_bytes": _read(quant_json_path(tfl))["output"]["size_bytes"],
        "export": _read(cdir / "export.json"),
    }
    if full:
        result.update(measure_host_and_core(b, variant, run, tfl, cdir))
    return result


def measure_host_and_core(
    b: Bench, variant: str, run: Path, tfl: Path, cdir: Path
) -> dict[str, Any]:
    """Host throughput of every engine, and memory / instructions on every board."""
    b.run(
        f"{variant}/verify-all",
        ["verify", str(tfl), "--backend", "all", "--json", str(run / "verify_all.json"), "-q"],
    )
    b.run(
        f"{variant}/mcu-all",
        [
            "mcu-test",
            str(cdir),
            "--board",
            "all",
            "--images",
            "100",
            "--json",
            str(run / "mcu_all.json"),
            "-q",
        ],
    )
    b.run(
        f"{variant}/mcu-m4-portable",
        [
            "mcu-test",
            str(cdir),
            "--board",
            "mps2-an386",
            "--no-dsp",
            "--images",
            "100",
            "--json",
            str(run / "mcu_m4_portable.json"),
            "-q",
        ],
    )
    vall = _read(run / "verify_all.json")
    host = measure_host_section(b, tfl, cdir, vall)
    mcu_all = _read(run / "mcu_all.json")
    portable = _board(_read(run / "mcu_m4_portable.json"), "mps2-an386")
    cores = [
        _core_row("Cortex-M4 (DSP)", _board(mcu_all, "mps2-an386")),
        _core_row("Cortex-M4 (portable C)", portable),
        _core_row("Cortex-M7 (DSP)", _board(mcu_all, "mps2-an500")),
        _core_row("Cortex-M3 (portable C)", _board(mcu_all, "stm32vldiscovery")),
        _core_row("Cortex-M0 (portable C)", _board(mcu_all, "microbit")),
    ]
    stm32 = _board(mcu_all, "stm32vldiscovery")
    from lenet_edge.bench_optimize import measure_size_mode

    return {
        "optimize_size": measure_size_mode(b, variant, run, tfl),
        "host": host,
        "fidelity": vall["pairwise"],
        "cores": cores,
        "boards_bit_exact": {bd["board"]: bd["passed"] for bd in mcu_all["boards"]},
        "tflm_arena": vall.get("tflm_arena"),
        "stm32vldiscovery": {
            "peak_ram": stm32["memory"]["peak_ram"],
            "ram_size": stm32["memory_map"]["ram"][1],
            "library_ram": stm32["memory"].get("library_ram"),
        },
    }


def measure_host_section(b: Bench, tfl: Path, cdir: Path, vall: dict[str, Any]) -> dict[str, Any]:
    """The host comparison (:func:`lenet_edge.host_bench.measure_host`: the engine at ``-O2``
    and ``-O2 -march=native`` against LiteRT with and without its loop overhead), plus the
    other interpreters' mean per-call latency as ``verify --backend all`` measured it."""
    from lenet_edge import data
    from lenet_edge.host_bench import LITERT_VARIANTS, measure_host

    host = measure_host(cdir, tfl.read_bytes(), data.load(b.data_dir).x_test, quiet=b.quiet)
    host["interpreters"] = {
        name: {
            "us_per_image": res["latency"]["mean_us"],
            "wall_seconds_10k": res["wall_seconds"],
            "timed": "verify --backend all: mean of per-call latencies, one pass",
        }
        for name, res in vall["results"].items()
        if name not in LITERT_VARIANTS
    }
    return host


def run_bench(
    out: Path,
    variants: Sequence[str] = ("seed", "modern"),
    epochs: int | None = None,
    data_dir: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the whole bench into ``out``; write ``bench.json`` and ``BENCHMARKS.md``."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "gcc"):
        if shutil.which(tool) is None:
            raise LenetEdgeError(f"{tool} is not installed; run `make system-deps` first")
    out.mkdir(parents=True, exist_ok=True)
    b = Bench(out=out, quiet=quiet, data_dir=data_dir)
    start = time.perf_counter()
    results = {v: run_variant(b, v, full=(i == 0), epochs=epochs) for i, v in enumerate(variants)}
    record = {
        "tool": f"lenet-edge {__version__}",
        "command": "lenet-edge bench" + (f" --epochs {epochs}" if epochs else ""),
        "machine": describe_machine(),
        "variants": results,
        "walls": b.walls,
        "bench_wall_seconds": round(time.perf_counter() - start, 1),
        "lecun_1998_accuracy": LECUN_1998_ACCURACY,
        "tflm_peer_reference": TFLM_PEER,
    }
    record["engine_before"] = engine_before()
    atomic_write_json(out / "bench.json", record)
    atomic_write_text(out / "BENCHMARKS.md", render_markdown(record))
    return record


#: The engine's figures before issue 12 (commit cec48d5), quoted as the "before" column.
ENGINE_BEFORE = Path(__file__).with_name("engine_before.json")


def engine_before() -> dict[str, Any]:
    """The engine's per-core and per-layer instruction counts before issue 12, as `bench`
    measured them at commit cec48d5 (exact QEMU counts of the same GCC build, so they do not
    depend on the host): the reference the "before" columns are set against."""
    return _read(ENGINE_BEFORE)


def _before_markdown(main: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """Instructions per layer and per MAC, the engine before issue 12 against this run."""
    if not before or before.get("variant") != main["variant"]:
        return []
    old = {c["label"]: c for c in before["cores"]}
    cores = [c for c in main["cores"] if c["label"] in old]
    if not cores:
        return []
    lines = [
        f"Per layer, before (the engine of commit {before['commit']}, same bench) and now; "
        "instructions, per MAC in parentheses:",
        "",
        "| layer | MACs | " + " | ".join(f"{c['label']} before | now" for c in cores) + " |",
        "|---|---|" + "---|---|" * len(cores),
    ]

    def cell(layer: dict[str, Any] | None) -> str:
        if layer is None:
            return "–"
        per = layer.get("per_mac")
        return f"{layer['instructions']:,}" + (f" ({per:.2f})" if per else "")

    for i, layer in enumerate(cores[0]["per_layer"]):
        cells = []
        for c in cores:
            prev = {x["name"]: x for x in old[c["label"]]["per_layer"]}.get(layer["name"])
            now = c["per_layer"][i] if i < len(c["per_layer"]) else None
            cells += [cell(prev), cell(now)]
        lines.append(
            f"| {layer['name']} | {layer.get('macs') or 0:,} | " + " | ".join(cells) + " |"
        )
    totals = []
    for c in cores:
        prev = old[c["label"]]
        totals += [
            f"**{prev['instructions']:,}** ({prev['per_mac']:.2f})",
            f"**{c['instructions']:,}** ({c['per_mac']:.2f})",
        ]
    lines.append("| **total** | | " + " | ".join(totals) + " |")
    lines.append("")
    return lines


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def render_markdown(rec: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables for a bench record."""
    m = rec["machine"]
    v = rec["variants"]
    main = next(iter(v.values()))
    lines = [
        "# lenet-edge benchmarks",
        "",
        f"Produced by `{rec['command']}` ({rec['tool']}) in one run of "
        f"{rec['bench_wall_seconds'] / 60:.1f} minutes. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['os']}; TensorFlow {m['packages'].get('tensorflow-cpu', '?')}, "
        f"ai-edge-litert {m['packages'].get('ai-edge-litert', '?')}, tflite-micro "
        f"{m['packages'].get('tflite-micro', '?')}; {m['gcc']}; {m['arm-none-eabi-gcc']}; "
        f"{m['qemu-system-arm']}.",
        "",
        "## Accuracy (MNIST test set, 10,000 images)",
        "",
        "| model | float | int8 (LiteRT) | on the MCU (mps2-an386, all 10k streamed) | float/int8 "
        "agreement | bit-exact with TFLM on the MCU |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in v.items():
        lines.append(
            f"| `{name}` | {_pct(r['float_accuracy'])} | {_pct(r['int8_accuracy'])} | "
            f"{_pct(r['on_mcu_accuracy'])} | {_pct(r['agreement'])} | "
            f"{'yes' if r['on_mcu_bit_exact'] else 'NO'} ({r['on_mcu_images']} images) |"
        )
    lines += [
        f"| LeCun et al. 1998 (no distortions) | {_pct(rec['lecun_1998_accuracy'])} | | | | |",
        "",
        "## Time to a deployable model (wall seconds)",
        "",
        "| model | train | quantize | verify (LiteRT, 10k) | export-c | total |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in v.items():
        w = r["walls"]
        lines.append(
            f"| `{name}` ({r['epochs']} epochs, best {r['best_epoch']}) | {w['train']:.0f} | "
            f"{w['quantize']:.1f} | {w['verify']:.1f} | {w['export-c']:.1f} | "
            f"{r['time_to_deployable']:.0f} |"
        )
    lines += ["", "Each step is a separate `lenet-edge` process, start-up included.", ""]
    if "host" in main:
        from lenet_edge.bench_optimize import optimize_markdown
        from lenet_edge.host_bench import host_markdown

        lines += host_markdown(main["host"], main["variant"])
        e = main["export"]
        s = main["stm32vldiscovery"]
        arena = main.get("tflm_arena") or e.get("tflm_arena") or {}
        code = {c["label"]: c["code_bytes"] for c in main["cores"]}
        lines += [
            "",
            f"## Size and memory (`{main['variant']}`)",
            "",
            "| item | bytes |",
            "|---|---|",
            f"| `.tflite` model | {main['tflite_bytes']:,} |",
            f"| TFLM arena, measured (x86-64 host interpreter) | "
            f"{arena.get('measured_bytes', arena.get('bytes', '–')):,} |",
            f"| standalone weights and tables (`const`) | {e['weight_bytes']['total']:,} |",
            f"| `LENET_SCRATCH_SIZE` | {e['scratch_size']:,} |",
            f"| library code + data in flash, Cortex-M4 | {code['Cortex-M4 (DSP)']:,} |",
            f"| library code + data in flash, Cortex-M0 | {code['Cortex-M0 (portable C)']:,} |",
            f"| peak RAM on stm32vldiscovery (of {s['ram_size'] // 1024} KB), test harness "
            f"included | {s['peak_ram']:,} |",
            "",
            f"## On the core (`{main['variant']}`, exact instruction counts, QEMU, one inference)",
            "",
            "| core | instructions per inference | per MAC |",
            "|---|---|---|",
        ]
        for c in main["cores"]:
            lines.append(f"| {c['label']} | {c['instructions']:,} | {c['per_mac']:.2f} |")
        peer = rec["tflm_peer_reference"]
        lines += [
            f"| TFLM, CMSIS-NN kernels, Cortex-M4 (reference figure¹) | "
            f"{peer['instructions_cmsis_nn']:,} | |",
            f"| TFLM, reference kernels, Cortex-M4 (reference figure¹) | "
            f"{peer['instructions_reference_kernels']:,} | |",
            "",
            "Per layer:",
            "",
            "| layer | MACs | " + " | ".join(c["label"] for c in main["cores"]) + " |",
            "|---|---|" + "---|" * len(main["cores"]) + "",
        ]
        names = [layer["name"] for layer in main["cores"][0]["per_layer"]]
        for i, lname in enumerate(names):
            macs = main["cores"][0]["per_layer"][i].get("macs") or 0
            cells = []
            for c in main["cores"]:
                layer = c["per_layer"][i] if i < len(c["per_layer"]) else None
                cells.append(f"{layer['instructions']:,}" if layer else "–")
            lines.append(f"| {lname} | {macs:,} | " + " | ".join(cells) + " |")
        lines += ["", f"¹ {peer['source']}; not measured by this bench.", ""]
        lines += _before_markdown(main, rec.get("engine_before"))
        lines += optimize_markdown(main)
        lines += _cycles_markdown(main)
        lines += [
            "## Fidelity (int8 outputs over 10,000 images)",
            "",
            "| pair | images that differ | largest difference (LSB) |",
            "|---|---|---|",
        ]
        for p in main["fidelity"]:
            lines.append(
                f"| {p['a']} vs {p['b']} | {p['images_differ']} | {p.get('max_lsb', '–')} |"
            )
        exact = ", ".join(
            f"{k} {'yes' if ok else 'NO'}" for k, ok in main["boards_bit_exact"].items()
        )
        lines += ["", f"Standalone C on the boards vs TFLM, bit for bit: {exact}.", ""]
    return "\n".join(lines)


def _cycles_markdown(main: dict[str, Any]) -> list[str]:
    """The cycle estimates of the cores, in a section of their own: estimated, never measured,
    and never set beside TFLM's figures, which are quoted in instructions."""
    from firmware_export.mcu.cycles import milliseconds_text

    cores = [c for c in main["cores"] if c.get("cycles")]
    if not cores:
        return []
    lines = [
        f"## On the core: cycles, estimated from the instruction trace (`{main['variant']}`, "
        "one inference)",
        "",
        "Not measured: QEMU counts instructions, and each executed instruction is charged the "
        "cycles of its class in the core's Technical Reference Manual, with zero wait states "
        '(the model, its sources and what it ignores: `docs/performance.md`, section "Cycles '
        "(estimated from the instruction trace)\"). TFLM's figures are quoted in instructions "
        "only and have no cycle estimate.",
        "",
        "| core | cycles per inference (estimated from the instruction trace) | range | per MAC "
        "| milliseconds (estimated) |",
        "|---|---|---|---|---|",
    ]
    reasons = []
    for c in cores:
        cyc = c["cycles"]
        if not cyc["modelled"]:
            lines.append(f"| {c['label']} | not modelled² | | | |")
            reasons.append(f"² {c['label']}: {cyc['reason']}.")
            continue
        low, high = cyc["range"]
        spread = f"{low:,} to {high:,}" if low != high else "–"
        ms = milliseconds_text(cyc["ms"])
        per_mac = f"{cyc['per_mac']:.2f}" if cyc["per_mac"] is not None else "–"
        lines.append(f"| {c['label']} | {cyc['per_inference']:,} | {spread} | {per_mac} | {ms} |")
    if reasons:
        lines += ["", *reasons]
    modelled = [c for c in cores if c["cycles"]["modelled"] and c["cycles"]["per_layer"]]
    if modelled:
        lines += [
            "",
            "Per layer (cycles estimated from the instruction trace; per MAC in parentheses):",
            "",
            "| layer | " + " | ".join(c["label"] for c in modelled) + " |",
            "|---|" + "---|" * len(modelled),
        ]
        for i, layer in enumerate(modelled[0]["cycles"]["per_layer"]):
            cells = []
            for c in modelled:
                rows = c["cycles"]["per_layer"]
                row = rows[i] if i < len(rows) else None
                if row is None:
                    cells.append("–")
                    continue
                per_mac = f" ({row['per_mac']:.2f})" if row["per_mac"] is not None else ""
                cells.append(f"{row['cycles']:,}{per_mac}")
            lines.append(f"| {layer['name']} | " + " | ".join(cells) + " |")
    return [*lines, ""]
