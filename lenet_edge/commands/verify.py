"""``lenet-edge verify``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from lenet_edge.commands._common import (
    PercentType,
    check_json_output,
    count,
    data_dir_option,
    json_option,
    json_to_stdout,
    quiet_option,
    write_json,
)
from lenet_edge.interpreters import BACKENDS

EPILOG = (
    "Backends: litert = ai_edge_litert with its default kernels (XNNPACK); litert-ref = "
    "LiteRT's reference kernels; tflm = the TFLM Python interpreter, the kernels the MCU runs "
    "and the golden reference for the firmware; tflite-runtime = the legacy package "
    "(2.14), run in a worker under its own cached environment with NumPy < 2, made on first use in "
    "~/.cache/lenet-edge/tflite-runtime-2.14 (or set LENET_EDGE_TFLITE_RUNTIME_PYTHON to a "
    "Python that has it); all = every available one, side by "
    "side, with pairwise output differences in LSB. The input is prepared from "
    "the model's own input tensor (28x28 or 32x32; int8, uint8 or float32 with its scale and "
    "zero point), so any LeNet .tflite verifies, float ones included. The minimum TFLM arena "
    "is measured on this host (x86-64). Exit status: 0 passed, 1 failed (including "
    "--min-accuracy), 2 usage error."
)


def _command_line(
    model: Path,
    reference: Path | None,
    backends: tuple[str, ...],
    min_accuracy: float | None,
    json_out: Path | None,
    limit: int | None,
    arena: bool,
    data_dir: str | None,
) -> str:
    args = ["lenet-edge", "verify", str(model)]
    if reference is not None:
        args += ["--reference", str(reference)]
    for b in backends:
        args += ["--backend", b]
    if min_accuracy is not None:
        args += ["--min-accuracy", f"{min_accuracy:g}"]
    if json_out is not None:
        args += ["--json", str(json_out)]
    if limit is not None:
        args += ["--limit", str(limit)]
    if not arena:
        args.append("--no-arena")
    if data_dir:
        args += ["--data-dir", data_dir]
    return shlex.join(args)


@click.command("verify", epilog=EPILOG)
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--reference",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Float reference: the .keras model the .tflite came from (or a float "
    ".tflite). Adds float accuracy, float/int8 top-1 agreement, the images where "
    "they disagree and the probability differences.",
)
@click.option(
    "--backend",
    "backends",
    type=click.Choice([*BACKENDS, "all"]),
    multiple=True,
    default=("litert",),
    show_default=True,
    help="Interpreter(s) to run; repeat the option or use 'all'.",
)
@click.option(
    "--min-accuracy",
    type=PercentType(),
    default=None,
    help="CI gate, in PERCENT (e.g. 98.5 or 98.5%): exit 1 when the top-1 accuracy "
    "on any backend is below it. The JSON is written first.",
)
@json_option("Write every figure as JSON to FILE.")
@click.option(
    "--limit",
    type=count(1, 10000),
    default=None,
    show_default="all 10,000",
    help="Only the first N test images (smoke runs; the report says so).",
)
@click.option(
    "--arena/--no-arena", default=True, show_default=True, help="Measure the minimum TFLM arena."
)
@data_dir_option
@quiet_option
def command(
    model: Path,
    reference: Path | None,
    backends: tuple[str, ...],
    min_accuracy: float | None,
    json_out: Path | None,
    limit: int | None,
    arena: bool,
    data_dir: str | None,
    quiet: bool,
) -> None:
    """Verify a .tflite LeNet on the 10,000 MNIST test images.

    Reports top-1 accuracy, per-class accuracy and the confusion matrix, per-image host
    latency, and with --reference the float accuracy, float/int8 agreement, the mean
    absolute difference of the dequantized probabilities and the disagreeing images.
    """
    from lenet_edge import __version__, data
    from lenet_edge.errors import LenetEdgeError
    from lenet_edge.interpreters import read_tflite
    from lenet_edge.train import package_versions
    from lenet_edge.verify import (
        check_min_accuracy,
        check_reference_file,
        format_report,
        image_side,
        load_reference,
        resolve_backends,
        verify,
    )

    # Validate every input (and the output path) before any heavy work.
    check_json_output(json_out, ("the model", model), ("the --reference model", reference))
    tfl = read_tflite(model)
    try:
        image_side(tfl.input.shape)
    except LenetEdgeError as exc:
        raise LenetEdgeError(f"{model}: {exc}") from None
    checked_reference = None
    if reference is not None:
        checked_reference = check_reference_file(reference, expect=tfl)
    names, skipped = resolve_backends(list(backends), quiet=quiet)
    mnist = data.load(data_dir)
    images, labels = mnist.x_test, mnist.y_test
    if limit is not None:
        images, labels = images[:limit], labels[:limit]

    ref = None
    if checked_reference is not None:
        if not quiet:
            click.echo(f"float reference: {reference}", err=True)
        ref = load_reference(checked_reference, images, expect=tfl)
    report = verify(
        tfl,
        images,
        labels,
        names,
        reference=ref,
        skipped=skipped,
        quiet=quiet,
        arena=arena,
        split="test",
        subset=None if limit is None else f"first {limit} images only",
    )
    report["tool"] = f"lenet-edge {__version__}"
    report["command"] = _command_line(
        model, reference, backends, min_accuracy, json_out, limit, arena, data_dir
    )
    report["versions"] = package_versions()
    report["gate"] = None
    if min_accuracy is not None:
        worst = min(100 * r["accuracy"] for r in report["results"].values())
        report["gate"] = {
            "min_accuracy_percent": min_accuracy,
            "worst_accuracy_percent": worst,
            "passed": worst >= min_accuracy,
        }
    sys.stderr.flush()
    text = not json_to_stdout(json_out)
    if text:
        click.echo(format_report(report))
    if json_out is not None:
        write_json(json_out, report)
        if text:
            click.echo(f"\nfigures written to {json_out}")
    check_min_accuracy(report, min_accuracy)
    if min_accuracy is not None and text:
        click.echo(f"passed: accuracy >= {min_accuracy:g}% on {', '.join(report['results'])}")
