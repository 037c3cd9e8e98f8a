#!/usr/bin/env python3
"""Fuzz the exported C engine under AddressSanitizer + UBSan and compare it with TFLM.

    python scripts/fuzz_engine.py                 # the long run (make fuzz-engine)
    python scripts/fuzz_engine.py --random 5000 --images 500    # a quick one
    python scripts/fuzz_engine.py --optimize size --out build/fuzz/engine_size.json

Exports --model (default runs/default/model_int8.tflite, made by `make run`) with
firmware_export, builds its standalone engine with tests/c/fuzz_engine.c and
`-fsanitize=address,undefined -fno-sanitize-recover=all`, then runs: the public API with NULL
pointers and misaligned scratch; the extreme inputs (all -128, all 127, checkerboards,
stripes, ...); the MNIST test images (all 10,000 by default); and --random generated inputs
(eight families), of which every --sample-every'th is compared with TFLM. The extremes and
the real images are all compared with TFLM. Exits 1 on any sanitizer finding, failed check
or mismatch. The figures are written as JSON to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import tempfile
import time
from pathlib import Path

from firmware_export.cflags import OPTIMIZE_MODES
from lenet_edge.fsutil import OutputRefused, atomic_write_json, check_output_file
from lenet_edge.fuzz.engine import EngineFuzzError, fuzz

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "runs/default/model_int8.tflite")
    ap.add_argument("--random", type=int, default=100_000, help="generated inputs")
    ap.add_argument("--sample-every", type=int, default=50, help="compare 1 in N with TFLM")
    ap.add_argument("--images", type=int, default=10_000, help="MNIST test images (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--optimize",
        choices=OPTIMIZE_MODES,
        default="speed",
        help="the export-c --optimize mode of the engine under test",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "build/fuzz/engine.json")
    args = ap.parse_args()
    if not args.model.is_file():
        print(
            f"error: model {args.model} not found; run `make run` or pass --model",
            file=sys.stderr,
        )
        return 2

    try:  # before the run: the figures never replace the model under test
        check_output_file(args.out, [("the model", args.model)])
    except OutputRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from firmware_export.export import export_model, write_export
    from firmware_export.mnist import mnist_inputs, mnist_size
    from lenet_edge import data

    model = args.model.read_bytes()
    t0 = time.monotonic()
    result = export_model(model, n_vectors=1, optimize=args.optimize)
    plan = result.plan
    real = None
    if args.images and mnist_size(plan.input.shape) is not None:
        x = data.load().x_test[: args.images]
        real = mnist_inputs(x, plan.input.shape, plan.input.scale, plan.input.zero_point)
    with tempfile.TemporaryDirectory(prefix="lenet-edge-fuzz-engine-") as tmp:
        work = Path(tmp)
        write_export(result, work / "export")
        finding = None
        try:
            figures = fuzz(
                model,
                work / "export" / "standalone",
                work,
                real_inputs=real,
                n_random=args.random,
                sample_every=args.sample_every,
                seed=args.seed,
            )
        except EngineFuzzError as exc:
            finding = str(exc)
    record: dict[str, object] = {
        "what": "the standalone C engine exported from the model, built with "
        "-fsanitize=address,undefined -fno-sanitize-recover=all, against TFLM",
        "command": "python scripts/fuzz_engine.py " + " ".join(sys.argv[1:]),
        "model": {
            "path": str(args.model),
            "sha256": hashlib.sha256(model).hexdigest(),
            "scratch_size": result.report["scratch_size"],
        },
        "optimize": args.optimize,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "wall_seconds": round(time.monotonic() - t0, 1),
    }
    if finding is not None:  # a sanitizer report, a crash or a mismatch: the run stops there
        record.update(sanitizer_findings=1, finding=finding[-4000:])
        atomic_write_json(args.out, record)
        print(f"FINDING: {finding}", file=sys.stderr)
        return 1
    record.update(sanitizer_findings=0, mismatches_with_tflm=figures.mismatches, runs=figures.runs)
    atomic_write_json(args.out, record)
    parts = [
        f"{name} {run['inputs']}"
        for name, run in figures.runs.items()
        if isinstance(run, dict) and "inputs" in run
    ]
    print(
        f"engine fuzz: {', '.join(parts)}; api: {figures.runs['api']['result']}; "
        f"mismatches with TFLM {figures.mismatches}; no sanitizer finding; "
        f"{record['wall_seconds']}s; figures in {args.out}"
    )
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
