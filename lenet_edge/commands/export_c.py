"""``lenet-edge export-c``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from firmware_export.cflags import OPTIMIZE_MODES
from lenet_edge.commands._common import count, data_dir_option, out_option, quiet_option


def _check_prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from firmware_export.csyntax import check_prefix
    from firmware_export.errors import FirmwareExportError

    try:
        return check_prefix(value)
    except FirmwareExportError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("export-c")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@out_option("Output directory (receives tflm/, standalone/, test/, export.json).", directory=True)
@click.option(
    "--prefix",
    default="lenet",
    show_default=True,
    callback=_check_prefix,
    help="Name prefix of every generated file and C identifier.",
)
@click.option(
    "--test-vectors",
    "test_vectors",
    type=count(1, 10000),
    default=100,
    show_default=True,
    help="Test images embedded in test/ with TFLM's expected outputs.",
)
@click.option(
    "--optimize",
    type=click.Choice(OPTIMIZE_MODES),
    default="speed",
    show_default=True,
    help="speed: tile convolutions and a tabled softmax exp. size: int8 convolution weights, "
    "the exp computed, the smallest scratch arena (more instructions per inference).",
)
@data_dir_option
@quiet_option
def command(
    model: Path,
    out: Path,
    prefix: str,
    test_vectors: int,
    optimize: str,
    data_dir: str | None,
    quiet: bool,
) -> None:
    """Export an int8 .tflite as C: TFLM arrays and a standalone integer-only engine.

    Writes OUT/tflm/ (aligned model array, TFLM example with the op resolver and a
    measured arena), OUT/standalone/ (a C99 library, bit-exact with TFLM, no interpreter),
    OUT/test/ (test vectors with TFLM's outputs, main_host.c, Makefile: `make -C OUT/test
    test`) and OUT/export.json. Nothing is written when the model cannot be exported.
    """
    from firmware_export.errors import FirmwareExportError
    from firmware_export.export import export_model, write_export
    from firmware_export.mnist import mnist_size
    from firmware_export.reader import load_graph
    from lenet_edge import __version__, data
    from lenet_edge.errors import LenetEdgeError
    from lenet_edge.fsutil import atomic_dir, check_output_dir
    from lenet_edge.interpreters import check_tflite_file, read_model_bytes
    from lenet_edge.progress import Progress

    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out} is a file; give a directory")
    check_tflite_file(model)  # missing, empty, a Keras model, junk: one line naming the file
    model_bytes = read_model_bytes(model)
    check_output_dir(out, command="export-c", record="export.json", inputs=[model])
    try:
        graph = load_graph(model_bytes)  # fail fast, before any data is touched
    except FirmwareExportError as exc:
        raise FirmwareExportError(f"{model}: {exc}") from None
    images = labels = None
    if mnist_size(graph.tensors[graph.inputs[0]].shape) is not None:
        mnist = data.load(data_dir)  # test vectors are real digits when the model takes them
        images, labels = mnist.x_test, mnist.y_test
    bar = Progress(test_vectors, "TFLM reference outputs", quiet=quiet)
    try:
        result = export_model(
            model_bytes,
            model_name=model.name,
            prefix=prefix,
            n_vectors=test_vectors,
            images=images,
            labels=labels,
            # File names only: the banner of every generated file must not depend on where
            # the export ran (the same model gives the same bytes in any directory).
            command=shlex.join(
                [
                    *("lenet-edge", "export-c", model.name, "--out", out.name),
                    *("--prefix", prefix, "--test-vectors", str(test_vectors)),
                    *(("--optimize", optimize) if optimize != "speed" else ()),
                ]
            ),
            progress=bar.update,
            graph=graph,
            tool=f"lenet-edge {__version__}",
            optimize=optimize,
        )
    finally:
        bar.close()
    try:
        with atomic_dir(
            out, command="export-c", record="export.json"
        ) as tmp:  # all or nothing; a previous export is swapped out
            write_export(result, tmp)
    except OSError as exc:
        raise LenetEdgeError(
            f"cannot write {out}: {exc.strerror or exc}; nothing was written"
        ) from None
    r = result.report
    test_dir = shlex.quote(str(out / "test"))  # a hint the user pastes into a shell
    click.echo(
        f"exported {model.name} -> {out} (--optimize {optimize}): {len(r['layers'])} engine "
        f"layers, {r['macs']:,} MACs "
        f"(TFLM {r['tflm_macs']:,}), weights {r['weight_bytes']['total']:,} B, "
        f"{prefix.upper()}_SCRATCH_SIZE {r['scratch_size']:,} B (TFLM arena "
        f"{r['tflm_arena']['measured_bytes']:,} B); run `make -C {test_dir} test`"
    )
