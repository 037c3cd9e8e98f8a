"""``lenet-edge bench``."""

from __future__ import annotations

from pathlib import Path

import click

from lenet_edge.commands._common import data_dir_option, quiet_option


@click.command("bench")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("benchmarks"),
    show_default=True,
    help="Directory for bench.json, BENCHMARKS.md, the runs and the logs.",
)
@click.option(
    "--variant",
    "variants",
    type=click.Choice(["seed", "modern"]),
    multiple=True,
    default=("seed", "modern"),
    show_default=True,
    help="Variants to measure; the first also gets the host-throughput and on-core rows.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=1000),
    default=None,
    help="Override the training epochs (quick smoke runs; the defaults are what is quoted).",
)
@data_dir_option
@quiet_option
def command(
    out: Path, variants: tuple[str, ...], epochs: int | None, data_dir: str | None, quiet: bool
) -> None:
    """Measure everything the README quotes, in one run on this machine.

    For each variant: train, quantize, verify and export-c with default settings (timed), then
    stream all 10,000 test images through the Cortex-M4 emulator. For the first variant also:
    host throughput of LiteRT (XNNPACK and reference kernels), the TFLM interpreter and the
    standalone C engine over all 10k images, memory and exact instruction counts on every
    board. Writes OUT/bench.json and OUT/BENCHMARKS.md. Takes about 15 to 20 minutes.
    """
    from lenet_edge.bench import run_bench
    from lenet_edge.fsutil import check_output_dir

    out = check_output_dir(out, command="bench", record="bench.json")
    rec = run_bench(out, variants=variants, epochs=epochs, data_dir=data_dir, quiet=quiet)
    click.echo(
        f"bench finished in {rec['bench_wall_seconds'] / 60:.1f} min: "
        f"{out / 'BENCHMARKS.md'}, {out / 'bench.json'}"
    )
