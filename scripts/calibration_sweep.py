#!/usr/bin/env python3
"""How many calibration images does int8 post-training quantization need? One run.

    .venv/bin/python scripts/calibration_sweep.py MODEL.keras [--counts 10,25,...]
        [--seeds 0,1,2] [--per-tensor] [--val-limit N] [--out FILE.json]

For each calibration count N and seed, quantizes MODEL with N images drawn from the training
split (as ``lenet-edge quantize --calibration-samples N --seed S`` does) and measures, on the
validation split (the last 5,000 training images; never the test set) with LiteRT: int8
accuracy, float/int8 top-1 agreement and the mean absolute difference of the dequantized
probabilities against the float model. This is the measurement behind the default of
``--calibration-samples`` (see ``DEFAULT_CALIBRATION_SAMPLES`` in ``lenet_edge/quantize.py``).
Writes every row to FILE.json (default benchmarks/calibration_sweep.json) and prints a table of
the means over the seeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lenet_edge import data
from lenet_edge.bench import describe_machine
from lenet_edge.errors import LenetEdgeError
from lenet_edge.fsutil import atomic_write_json, sha256_file

ROOT = Path(__file__).resolve().parent.parent


def _int_list(minimum: int) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated integers, each at least ``minimum``."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            msg = f"{text!r} is not a comma-separated list of integers"
            raise argparse.ArgumentTypeError(msg) from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: give integers of at least {minimum}")
        return values

    return parse


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over the seeds, one row per calibration count (in the order first seen)."""
    out = []
    for n in dict.fromkeys(r["calibration_samples"] for r in rows):
        sub = [r for r in rows if r["calibration_samples"] == n]
        out.append(
            {
                "calibration_samples": n,
                "seeds": len(sub),
                "val_accuracy": sum(r["val_accuracy"] for r in sub) / len(sub),
                "agreement": sum(r["agreement"] for r in sub) / len(sub),
                "mean_abs_prob_diff": sum(r["mean_abs_prob_diff"] for r in sub) / len(sub),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="the float .keras model (lenet-edge train)")
    counts = "10,25,50,100,200,500,1000,2000,5000"
    ap.add_argument("--counts", type=_int_list(1), default=_int_list(1)(counts))
    ap.add_argument("--seeds", type=_int_list(0), default=[0, 1, 2])
    ap.add_argument("--per-tensor", action="store_true", help="per-tensor weights")
    ap.add_argument("--val-limit", type=int, default=None, help="first N validation images")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "calibration_sweep.json")
    args = ap.parse_args(argv)

    from lenet_edge.interpreters import check_keras_file
    from lenet_edge.model import load_keras_model
    from lenet_edge.quantize import calibration_sweep

    try:
        check_keras_file(args.model)
        mnist = data.load(args.data_dir)
        keras_model = load_keras_model(str(args.model))
    except LenetEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if max(args.counts) > len(mnist.x_train):
        print(f"error: --counts must lie in 1..{len(mnist.x_train)}", file=sys.stderr)
        return 2
    val_x, val_y = mnist.x_val[: args.val_limit], mnist.y_val[: args.val_limit]
    rows = calibration_sweep(
        keras_model,
        mnist.x_train,
        val_x,
        val_y,
        args.counts,
        args.seeds,
        per_channel=not args.per_tensor,
    )
    means = summarize(rows)
    print(f"{'N':>6} {'val acc %':>10} {'agree %':>8} {'mean |dp|':>10}   (mean of seeds)")
    for m in means:
        print(
            f"{m['calibration_samples']:>6} {100 * m['val_accuracy']:>10.2f} "
            f"{100 * m['agreement']:>8.2f} {m['mean_abs_prob_diff']:>10.5f}"
        )
    atomic_write_json(
        args.out,
        {
            "command": " ".join(["python scripts/calibration_sweep.py", *(argv or sys.argv[1:])]),
            "model": {"path": str(args.model), "sha256": sha256_file(args.model)},
            "validation_images": len(val_x),
            "per_channel": not args.per_tensor,
            "machine": describe_machine(),
            "rows": rows,
            "means": means,
        },
    )
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
