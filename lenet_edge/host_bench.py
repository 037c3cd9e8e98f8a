"""The host comparison of ``lenet-edge bench`` and ``scripts/bench_host_engine.py``: the
standalone C engine against LiteRT, on equal footing, in one run.

LiteRT can only be timed through a Python loop (one image per call: batching is refused by
the XNNPACK delegate on the seed model), while the engine is timed inside C. So the same loop,
with the same interpreter options and the same images, also runs on a trivial model with the
same input and output tensors (:mod:`lenet_edge.trivial_model`): its time is the loop's
overhead, and LiteRT's kernel time is the loop time minus that overhead. Both are reported,
and the engine is compared with each, at ``-O2 -march=native`` (its host SIMD path) and at
plain ``-O2`` (the x86-64 baseline: its portable C path).

Every measurement uses the chunked best-of harness of :mod:`lenet_edge.engine_bench`; all of
them are interleaved over ``rounds`` rounds and each keeps its fastest round, so that a burst
from another tenant of a shared machine does not land on one side of a ratio only. Only
ratios measured in the same run are meant to be compared.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from firmware_export.mcu import read_export
from lenet_edge import engine_bench
from lenet_edge.fsutil import sha256_bytes
from lenet_edge.trivial_model import trivial_model

#: Engine builds compared, by label: the host SIMD path and the portable C path.
ENGINE_BUILDS: dict[str, tuple[str, ...]] = {
    "-O2 -march=native": ("-O2", "-march=native"),
    "-O2": ("-O2",),
}
#: LiteRT variants, by the backend names of ``verify``: reference kernels or not.
LITERT_VARIANTS: dict[str, bool] = {"litert": False, "litert-ref": True}
#: LiteRT's reference kernels are about 20x slower than XNNPACK: fewer passes keep the bench
#: short, and the per-image time they measure is large against the machine's noise.
REF_PASSES = 2


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def measure_host(
    export_dir: str | os.PathLike[str],
    model_bytes: bytes,
    images: np.ndarray,
    *,
    expected: np.ndarray | None = None,
    rounds: int = 3,
    passes: int = 5,
    ref_passes: int = REF_PASSES,
    chunk: int = engine_bench.CHUNK,
    builds: dict[str, tuple[str, ...]] | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Time the engine of ``export_dir`` (each of ``builds``) and LiteRT (XNNPACK and
    reference kernels, each on ``model_bytes`` and on its trivial model) on raw MNIST
    ``images``, interleaved over ``rounds`` rounds; check the engine's outputs against
    ``expected`` (default: TFLM's, computed once).

    Returns ``litert`` (per variant: ``loop_us_per_image``, ``overhead_us_per_image``,
    ``kernel_us_per_image``, each round's figures), ``engine`` (per build, as
    :func:`engine_bench.measure_engine` with each round's figure), ``ratios`` (LiteRT's time
    over the engine's: above 1 the engine is faster), ``trivial_model`` and the load average
    before and after.
    """
    builds = dict(ENGINE_BUILDS if builds is None else builds)
    x = engine_bench.engine_inputs(export_dir, images)
    meta = read_export(export_dir).meta
    feed = x.reshape(len(x), *meta["input"]["shape"][1:])
    if expected is None:
        from firmware_export.tflm import engine_reference_outputs

        _say(quiet, f"host-bench: TFLM reference outputs ({len(x):,} images)")
        expected = engine_reference_outputs(model_bytes, feed)
    trivial = trivial_model(model_bytes)
    load_before = _load()
    eng_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in builds}
    lit_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in LITERT_VARIANTS}
    ovh_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in LITERT_VARIANTS}
    for r in range(rounds):
        for label, flags in builds.items():
            _say(quiet, f"host-bench: round {r + 1}/{rounds}: engine {label}")
            eng_runs[label].append(
                engine_bench.measure_engine(
                    export_dir,
                    images=images,
                    expected=expected,
                    flags=flags,
                    passes=passes,
                    chunk=chunk,
                )
            )
        for name, ref in LITERT_VARIANTS.items():
            p = ref_passes if ref else passes
            _say(quiet, f"host-bench: round {r + 1}/{rounds}: {name} (model, trivial model)")
            lit_runs[name].append(
                engine_bench.measure_litert(model_bytes, feed, reference=ref, passes=p, chunk=chunk)
            )
            ovh_runs[name].append(
                engine_bench.measure_litert(trivial, feed, reference=ref, passes=p, chunk=chunk)
            )
    litert = {name: _litert_entry(lit_runs[name], ovh_runs[name]) for name in LITERT_VARIANTS}
    engine = {label: _best(runs) for label, runs in eng_runs.items()}
    return {
        "images": len(x),
        "rounds": rounds,
        "chunk": chunk,
        "litert": litert,
        "engine": engine,
        "ratios": ratios(litert, engine),
        "trivial_model": _describe_trivial(trivial),
        "load_average_before": load_before,
        "load_average_after": _load(),
        "method": "every figure: sum over chunks of each chunk's fastest time in its passes, "
        f"fastest of {rounds} interleaved rounds; LiteRT kernel time = loop time on the model "
        "- loop time on the trivial model (same loop, options and images)",
    }


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _best(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round, with every round's figure."""
    best = min(runs, key=lambda r: r["us_per_image"])
    return {**best, "rounds_us_per_image": [r["us_per_image"] for r in runs]}


def _litert_entry(model: Sequence[dict[str, Any]], trivial: Sequence[dict[str, Any]]) -> dict:
    loop, ovh = _best(model), _best(trivial)
    kernel = round(loop["us_per_image"] - ovh["us_per_image"], 2)
    return {
        **loop,
        "loop_us_per_image": loop["us_per_image"],
        "overhead_us_per_image": ovh["us_per_image"],
        "kernel_us_per_image": kernel,
        "overhead_rounds_us_per_image": ovh["rounds_us_per_image"],
        "overhead_share": round(ovh["us_per_image"] / loop["us_per_image"], 4),
    }


def _speedup(litert_us: float, engine_us: float) -> float | None:
    return round(litert_us / engine_us, 2) if litert_us > 0 and engine_us > 0 else None


def ratios(litert: dict[str, Any], engine: dict[str, Any]) -> list[dict[str, Any]]:
    """For each engine build and LiteRT variant: LiteRT's per-image time over the engine's,
    with LiteRT's loop overhead (``vs_loop``) and without it (``vs_kernel``)."""
    return [
        {
            "engine": label,
            "litert": name,
            "vs_loop": _speedup(lit["loop_us_per_image"], eng["us_per_image"]),
            "vs_kernel": _speedup(lit["kernel_us_per_image"], eng["us_per_image"]),
        }
        for label, eng in engine.items()
        for name, lit in litert.items()
    ]


def _describe_trivial(model: bytes) -> dict[str, Any]:
    from lenet_edge.interpreters import parse_tflite

    m = parse_tflite(model, "trivial model")
    return {
        "ops": [op.name for op in m.ops],
        "bytes": len(model),
        "sha256": sha256_bytes(model),
        "input": m.input.as_dict(),
        "output": m.output.as_dict(),
    }


#: Row labels of the host tables.
HOST_LABELS = {
    "litert": "LiteRT, default kernels (XNNPACK)",
    "litert-ref": "LiteRT, reference kernels",
    "tflm": "TFLM Python interpreter",
    "tflite-runtime": "tflite-runtime 2.14 (worker process)",
}


def _x(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}×"


def host_markdown(host: dict[str, Any], variant: str) -> list[str]:
    """The host section of BENCHMARKS.md: LiteRT with and without its loop overhead, the
    engine per build, and the ratios measured in the same run."""
    trivial = " → ".join(host["trivial_model"]["ops"])
    load = host.get("load_average_before"), host.get("load_average_after")
    passes = ", ".join(
        f"{h['passes']} passes ({HOST_LABELS.get(k, k)})" for k, h in host["litert"].items()
    )
    passes += f", {next(iter(host['engine'].values()))['passes']} passes (engine)"
    lines = [
        f"## Host throughput (`{variant}`, {host['images']:,} test images, one thread)",
        "",
        "The engine is timed inside C; LiteRT through a Python loop, one image per call "
        "(`set_tensor`, `invoke`, `get_tensor`). The same loop, with the same interpreter "
        f"options and images, on a trivial model ({trivial}) with the model's input and "
        "output tensors measures the loop's overhead; LiteRT's kernel time is the loop time "
        "minus that overhead. Each figure is the sum over chunks of "
        f"{host['chunk']} images of each chunk's fastest time in {passes}, the fastest of "
        f"{host['rounds']} interleaved rounds. Load average (1, 5, 15 min) before: "
        f"{_loadavg(load[0])}, after: {_loadavg(load[1])}.",
        "",
        "| engine | µs per image, through the loop | loop overhead (trivial model) | "
        "kernel time (loop − overhead) |",
        "|---|---:|---:|---:|",
    ]
    for key, h in host["litert"].items():
        lines.append(
            f"| {HOST_LABELS.get(key, key)} | "
            f"{h['loop_us_per_image']:,.2f} | {h['overhead_us_per_image']:,.2f} | "
            f"{h['kernel_us_per_image']:,.2f} |"
        )
    for label, e in host["engine"].items():
        lines.append(
            f"| standalone C engine, `{label}` ({e['simd']} path; timed inside C, no loop) | "
            f"– | – | {e['us_per_image']:,.2f} |"
        )
    names = list(host["litert"])
    lines += [
        "",
        "LiteRT's time over the engine's (above 1×, the engine is faster), each ratio from "
        "this run:",
        "",
        "| engine | "
        + " | ".join(
            f"vs {HOST_LABELS.get(n, n)}, {kind}" for n in names for kind in ("loop", "kernel time")
        )
        + " |",
        "|---|" + "---:|" * (2 * len(names)),
    ]
    by_engine: dict[str, dict[str, dict[str, Any]]] = {}
    for r in host["ratios"]:
        by_engine.setdefault(r["engine"], {})[r["litert"]] = r
    for label, row in by_engine.items():
        cells = [f"{_x(row[n]['vs_loop'])} | {_x(row[n]['vs_kernel'])}" for n in names]
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    others = host.get("interpreters") or {}
    if others:
        lines += [
            "",
            "Other interpreters, not on the same footing (their loop overhead included):",
            "",
            "| interpreter | µs per image | timed |",
            "|---|---:|---|",
        ]
        for key, h in others.items():
            lines.append(
                f"| {HOST_LABELS.get(key, key)} | {h['us_per_image']:,.1f} | {h.get('timed', '')} |"
            )
    return [*lines, ""]


def _loadavg(values: list[float] | None) -> str:
    return "unknown" if not values else " / ".join(f"{v:.2f}" for v in values)
