#!/usr/bin/env python3
"""Host throughput of the standalone C engine against LiteRT (XNNPACK, one thread), one run.

    .venv/bin/python scripts/bench_host_engine.py [MODEL.tflite] [--out FILE.json]

Exports MODEL (default runs/default/model_int8.tflite) with ``export-c``, then measures, on
the 10,000 MNIST test images, interleaved over several rounds:

* the standalone engine compiled at ``-O2 -march=native`` (its x86 SIMD path with whatever
  this CPU has: AVX-512 or AVX2), at ``-O2 -mavx2 -mfma`` (the AVX2 path) and at plain ``-O2``
  (x86-64 baseline: the portable C path), timed inside C (``lenet_edge.engine_bench``);
* LiteRT with its default kernels (XNNPACK) and one thread, timed the same way in Python;
* the TFLM Python interpreter on a subset (it is 50x slower).

Every engine output is checked against TFLM, byte for byte. Timings on a shared machine are
noisy and only ever inflated by other tenants: each figure is the sum over chunks of 250 images
of each chunk's fastest time, and the comparison is a ratio measured in the same run. Writes
the figures to FILE.json (default benchmarks/host_engine.json) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from firmware_export.export import export_model, write_export
from firmware_export.tflm import TflmModel, engine_reference_outputs
from lenet_edge import data, engine_bench
from lenet_edge.bench import describe_machine
from lenet_edge.fsutil import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default=str(ROOT / "runs/default/model_int8.tflite"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/host_engine.json"))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    ap.add_argument("--passes", type=int, default=5, help="passes per measurement")
    ap.add_argument("--tflm-images", type=int, default=500)
    args = ap.parse_args(argv)

    model_path = Path(args.model)
    if not model_path.is_file():
        print(
            f"error: {model_path}: no such file; run `make run` first or give a model",
            file=sys.stderr,
        )
        return 1
    model_bytes = model_path.read_bytes()
    mnist = data.load()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        export_dir = Path(tmp_name) / "c"
        result = export_model(model_bytes, model_name=model_path.name, n_vectors=1)
        write_export(result, export_dir)
        x = engine_bench.engine_inputs(export_dir, mnist.x_test)
        shape = result.plan.input.shape
        feed = x.reshape(len(x), *shape[1:])
        print("TFLM reference outputs (10,000 images) ...", flush=True)
        expected = engine_reference_outputs(model_bytes, feed)
        builds = {
            "standalone-c -O2 -march=native": ("-O2", "-march=native"),
            "standalone-c -O2 -mavx2 -mfma": ("-O2", "-mavx2", "-mfma"),
            "standalone-c -O2": ("-O2",),
        }
        runs: dict[str, list[dict]] = {name: [] for name in [*builds, "litert"]}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ...", flush=True)
            for name, flags in builds.items():
                runs[name].append(
                    engine_bench.measure_engine(
                        export_dir,
                        images=mnist.x_test,
                        expected=expected,
                        flags=flags,
                        passes=args.passes,
                    )
                )
            runs["litert"].append(
                engine_bench.measure_litert(model_bytes, feed, passes=args.passes)
            )
        tflm = TflmModel(model_bytes)
        sub = feed[: args.tflm_images]
        tflm.run(sub[:1])  # warm: the reference outputs above ran in a warm interpreter too
        t0 = time.perf_counter()
        tflm.run(sub)
        tflm_us = (time.perf_counter() - t0) / len(sub) * 1e6

    best = {name: min(rs, key=lambda r: r["us_per_image"]) for name, rs in runs.items()}
    base = best["litert"]["us_per_image"]
    engines = {}
    for name, r in best.items():
        engines[name] = {
            **r,
            "rounds_us_per_image": [x["us_per_image"] for x in runs[name]],
            "throughput_vs_litert_xnnpack": round(base / r["us_per_image"], 2),
        }
    engines["tflm-python"] = {
        "us_per_image": round(tflm_us, 1),
        "images": args.tflm_images,
        "timed": "one pass, Python wall clock",
        "throughput_vs_litert_xnnpack": round(base / tflm_us, 3),
    }
    record = {
        "command": "python scripts/bench_host_engine.py " + " ".join(argv or sys.argv[1:]),
        "model": {"file": str(model_path), "bytes": len(model_bytes)},
        "machine": describe_machine(),
        "images": len(x),
        "rounds": args.rounds,
        "engines": engines,
        "target": "standalone C (-O2 ...) >= 2x LiteRT XNNPACK single-thread throughput",
        "target_met": engines["standalone-c -O2 -march=native"]["throughput_vs_litert_xnnpack"]
        >= 2.0,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, record)
    print(f"\n{'engine':<34} {'us/image':>9} {'vs XNNPACK':>11}")
    for name, e in engines.items():
        print(f"{name:<34} {e['us_per_image']:>9.2f} {e['throughput_vs_litert_xnnpack']:>10.2f}x")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
