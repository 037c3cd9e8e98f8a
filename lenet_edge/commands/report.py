"""``lenet-edge report``."""

from __future__ import annotations

from pathlib import Path

import click

from lenet_edge.commands._common import data_dir_option, quiet_option

EPILOG = (
    "Inputs are found in RUN_DIR by content: model.keras and train.json (train), the int8 "
    ".tflite and its record (quantize), the JSON of `verify --json`, export.json (export-c) "
    "and the JSON of `mcu-test --json`; files made from another model are ignored, with a "
    "note. MODEL is the int8 .tflite to report on, when RUN_DIR holds several. A verification "
    "of the int8 model on every host interpreter is run when no verify JSON matches (about a "
    "minute). After the page is written it is saved for the next report, as RUN_DIR/verify.json "
    "(RUN_DIR/verify-limit-N.json with --limit N), but never over an existing file. What cannot be "
    "computed here (the C export, the board measurements) is marked 'not measured' with the "
    "command that measures it. The page is self-contained (images embedded, no scripts) and "
    "deterministic: the same inputs give the same bytes."
)


@click.command("report", epilog=EPILOG)
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument(
    "model", required=False, type=click.Path(path_type=Path, dir_okay=False), default=None
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the HTML.  [default: RUN_DIR/report.html]",
)
@click.option(
    "--model",
    "model_option",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    hidden=True,
    help="Deprecated: give MODEL after RUN_DIR.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=10000),
    default=None,
    help="Only the first N test images (smoke runs; the page says so).",
)
@click.option(
    "--sqnr-images",
    type=click.IntRange(min=1, max=10000),
    default=500,
    show_default=True,
    help="Test images over which the per-layer quantization error is measured.",
)
@data_dir_option
@quiet_option
def command(
    run_dir: Path,
    model: Path | None,
    out: Path | None,
    model_option: Path | None,
    limit: int | None,
    sqnr_images: int,
    data_dir: str | None,
    quiet: bool,
) -> None:
    """Write an HTML report of a run: training curves, int8 confusion matrix, per-class
    accuracy float vs int8, misclassified digits, per-layer quantization error (SQNR), size
    and memory, and the fidelity of every interpreter and board.
    """
    from lenet_edge.report import Options, write_report

    if model_option is not None:
        if model is not None and model != model_option:
            raise click.UsageError(
                f"MODEL {model} and --model {model_option} differ; give MODEL only "
                "(--model is deprecated)"
            )
        model = model_option
    path, report = write_report(
        run_dir,
        out,
        model,
        Options(limit=limit, sqnr_images=sqnr_images, data_dir=data_dir, quiet=quiet),
    )
    facts = report.facts
    bits = []
    if "float_accuracy" in facts:
        bits.append(f"float {100 * facts['float_accuracy']:.2f}%")
    if "int8_accuracy" in facts:
        bits.append(f"int8 {100 * facts['int8_accuracy']:.2f}% ({facts['int8_backend']})")
    if bits:
        click.echo(f"{', '.join(bits)} on {facts['images']:,} test images")
    click.echo(f"report written to {path}")
