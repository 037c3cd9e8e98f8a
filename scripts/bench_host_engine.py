#!/usr/bin/env python3
"""Host throughput of the standalone C engine against LiteRT, on equal footing, in one run.

    .venv/bin/python scripts/bench_host_engine.py [MODEL.tflite] [--out FILE.json]

Exports MODEL (default runs/default/model_int8.tflite) with ``export-c``, then measures, on
the 10,000 MNIST test images, interleaved over several rounds (``lenet_edge.host_bench``):

* the standalone engine compiled at ``-O2 -march=native`` (its host SIMD path with what this
  CPU has) and at plain ``-O2`` (x86-64 baseline: the portable C path), timed inside C;
* LiteRT with its default kernels (XNNPACK) and with its reference kernels, one thread, timed
  through a Python loop (one image per call), and the same loop on a trivial model with the
  same input and output tensors: its time is the loop's overhead, and LiteRT's kernel time is
  the loop time minus that overhead;
* the TFLM Python interpreter on a subset (it is about 100x slower than XNNPACK).

Every engine output is checked against TFLM, byte for byte. Timings on a shared machine are
noisy and only ever inflated by other tenants: each figure is the sum over chunks of 250 images
of each chunk's fastest time, the fastest of the rounds, and every comparison is a ratio
measured in the same run. Writes the figures to FILE.json (default
benchmarks/host_engine.json) and FILE.md (the same tables as ``lenet-edge bench``), and prints
the tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from firmware_export.export import export_model, write_export
from firmware_export.tflm import TflmModel
from lenet_edge import data
from lenet_edge.bench import describe_machine
from lenet_edge.fsutil import (
    OutputRefused,
    atomic_write_json,
    atomic_write_text,
    check_output_file,
)
from lenet_edge.host_bench import REF_PASSES, host_markdown, measure_host

ROOT = Path(__file__).resolve().parent.parent
#: How the Markdown this script writes begins (it replaces only a file that begins so).
MD_MARK = "Produced by `python scripts/bench_host_engine.py"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default=str(ROOT / "runs/default/model_int8.tflite"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/host_engine.json"))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    ap.add_argument("--passes", type=int, default=5, help="passes per measurement")
    ap.add_argument(
        "--ref-passes",
        type=int,
        default=REF_PASSES,
        help="passes per measurement of LiteRT's reference kernels",
    )
    ap.add_argument("--images", type=int, default=10_000, help="first N test images")
    ap.add_argument("--tflm-images", type=int, default=500)
    args = ap.parse_args(argv)

    model_path = Path(args.model)
    if not model_path.is_file():
        print(
            f"error: {model_path}: no such file; run `make run` first or give a model",
            file=sys.stderr,
        )
        return 1
    out = Path(args.out)
    md = out.with_suffix(".md")
    try:
        # Both outputs are checked before the long run: never the model, never each other,
        # and the Markdown beside the JSON only replaces an earlier one of this script.
        check_output_file(out, [("the model", model_path)])
        check_output_file(md, [("the model", model_path), ("the JSON output", out)])
        if md.is_file() and not md.read_text(errors="replace").startswith(MD_MARK):
            raise OutputRefused(
                f"{md} exists and was not written by this script; give --out another name"
            )
    except OutputRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model_bytes = model_path.read_bytes()
    images = data.load().x_test[: args.images]
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        export_dir = Path(tmp_name) / "c"
        result = export_model(model_bytes, model_name=model_path.name, n_vectors=1)
        write_export(result, export_dir)
        host = measure_host(
            export_dir,
            model_bytes,
            images,
            rounds=args.rounds,
            passes=args.passes,
            ref_passes=args.ref_passes,
            quiet=False,
        )
        from lenet_edge.engine_bench import engine_inputs

        feed = engine_inputs(export_dir, images[: args.tflm_images])
        feed = feed.reshape(len(feed), *result.plan.input.shape[1:])
        tflm = TflmModel(model_bytes)
        tflm.run(feed[:1])  # warm: the reference outputs above ran in a warm interpreter too
        t0 = time.perf_counter()
        tflm.run(feed)
        tflm_us = (time.perf_counter() - t0) / len(feed) * 1e6
    host["interpreters"] = {
        "tflm": {
            "us_per_image": round(tflm_us, 1),
            "images": len(feed),
            "timed": "one pass, Python wall clock, loop overhead included",
        }
    }
    record = {
        "command": "python scripts/bench_host_engine.py " + " ".join(argv or sys.argv[1:]),
        "model": {"file": str(model_path), "bytes": len(model_bytes)},
        "machine": describe_machine(),
        "host": host,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join(
        [
            f"Produced by `{record['command'].strip()}` on {record['machine']['cpu']} "
            f"({record['machine']['cores']} cores) in {record['wall_seconds']:.0f} s.",
            "",
            *host_markdown(host, model_path.name),
        ]
    )
    atomic_write_json(out, record)
    atomic_write_text(md, markdown)
    print("\n" + markdown)
    print(f"written {out} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
