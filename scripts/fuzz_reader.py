#!/usr/bin/env python3
"""Fuzz firmware_export's .tflite reader (and the stages after it) with mutated real models.

    python scripts/fuzz_reader.py --cases 100000            # the long run (make fuzz-reader)
    python scripts/fuzz_reader.py --replay 1234 --write m.tflite   # one case again

Each case mutates the seed model (a real LeNet int8 .tflite; default runs/default/
model_int8.tflite, made by `make run`) with a plan drawn from random.Random(f"{seed}:{case}")
(see lenet_edge/fuzz/tflite_mutate.py), then runs read_model -> check_graph -> build_plan; every
--render-every'th case that gets that far also runs the C writer, and every
--export-every'th the whole export_model, TFLM included. A case must end in
FirmwareExportError or in success. Anything else (another exception, a crash of the worker,
a case over --timeout seconds) is a bug: the model is saved under --failures and the run
exits 1.

The figures (cases, outcome histogram, bugs, wall time) are written as JSON to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import sys
import time
from pathlib import Path

from lenet_edge.fsutil import (
    OutputRefused,
    atomic_write_bytes,
    atomic_write_text,
    check_output_file,
)
from lenet_edge.fuzz.runner import Bug, run_campaign
from lenet_edge.fuzz.tflite_mutate import (
    find_sites,
    memoize_pure_math,
    mutate,
    random_plan,
    run_case,
)

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "runs/default/model_int8.tflite")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    ap.add_argument("--render-every", type=int, default=4, help="run the C writer on 1 in N")
    ap.add_argument("--export-every", type=int, default=20, help="whole export on 1 in N")
    ap.add_argument("--out", type=Path, default=ROOT / "build/fuzz/reader.json")
    ap.add_argument("--failures", type=Path, default=ROOT / "build/fuzz/reader-failures")
    ap.add_argument("--replay", type=int, default=None, help="run one case in this process")
    ap.add_argument("--write", type=Path, default=None, help="with --replay: save the model")
    args = ap.parse_args()

    if not args.model.is_file():
        print(
            f"error: seed model {args.model} not found; run `make run` or pass --model",
            file=sys.stderr,
        )
        return 2
    try:  # before the run: an output never replaces the seed model, nor the one the other
        check_output_file(args.out, [("the seed model", args.model)])
        if args.write is not None:
            check_output_file(args.write, [("the seed model", args.model)], option="--write")
    except OutputRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    memoize_pure_math()
    seed_model = args.model.read_bytes()
    sites = find_sites(seed_model)

    def case_bytes(i: int) -> bytes:
        return mutate(seed_model, sites, random_plan(random.Random(f"{args.seed}:{i}")))

    def target(i: int) -> str:
        return run_case(
            case_bytes(i),
            export=i % args.export_every == 0,
            render=i % args.render_every == 0,
        )

    if args.replay is not None:
        data = case_bytes(args.replay)
        if args.write:
            atomic_write_bytes(args.write, data)
        print(target(args.replay))
        return 0

    def on_bug(b: Bug) -> None:
        args.failures.mkdir(parents=True, exist_ok=True)
        (args.failures / f"case-{b.case}.tflite").write_bytes(case_bytes(b.case))
        print(f"\nBUG case {b.case}: {b.kind}: {b.summary}\n{b.detail}", file=sys.stderr)

    last = [time.monotonic()]

    def progress(done: int) -> None:
        if time.monotonic() - last[0] > 10 or done == args.cases:
            last[0] = time.monotonic()
            print(f"\r{done}/{args.cases} cases", end="", file=sys.stderr, flush=True)

    camp = run_campaign(
        target,
        args.cases,
        workers=args.workers,
        timeout=args.timeout,
        on_bug=on_bug,
        progress=progress,
        start=args.start,
    )
    print(file=sys.stderr)
    by_stage: dict[str, int] = {}
    for label, n in camp.outcomes.items():
        head = label.split(":")[0]
        by_stage[head] = by_stage.get(head, 0) + n
    figures = {
        "what": "mutated real LeNet .tflite models through read_model, check_graph, build_plan, "
        "the C writer and (a sample) export_model with TFLM",
        "command": "python scripts/fuzz_reader.py " + " ".join(sys.argv[1:]),
        "seed_model": {
            "path": str(args.model),
            "bytes": len(seed_model),
            "sha256": hashlib.sha256(seed_model).hexdigest(),
            "structural_sites": len(sites),
        },
        "seed": args.seed,
        "first_case": args.start,
        "render_every": args.render_every,
        "export_every": args.export_every,
        "timeout_seconds_per_case": args.timeout,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "outcomes_by_stage": dict(sorted(by_stage.items(), key=lambda kv: -kv[1])),
        **camp.as_dict(),
    }
    atomic_write_text(args.out, json.dumps(figures, indent=2) + "\n")
    print(
        f"{figures['cases']} cases in {camp.wall_seconds:.0f}s: "
        + ", ".join(f"{k} {v}" for k, v in figures["outcomes_by_stage"].items())
        + f"; bugs {len(camp.bugs)}; figures in {args.out}"
    )
    return 1 if camp.bugs else 0


if __name__ == "__main__":
    sys.exit(main())
