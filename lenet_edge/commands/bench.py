"""``lenet-edge bench``."""

from __future__ import annotations

from pathlib import Path

import click

from lenet_edge.commands._common import count, data_dir_option, out_option, quiet_option


@click.command("bench")
@out_option(
    "Directory for bench.json, BENCHMARKS.md, the runs and the logs.",
    directory=True,
    default=Path("benchmarks"),
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
    type=count(1, 1000),
    default=None,
    show_default="train's default",
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
    board. Writes OUT/bench.json and OUT/BENCHMARKS.md. Takes about 5 minutes on 2 cores
    (4.4 minutes for benchmarks/BENCHMARKS.md).
    """
    from lenet_edge.bench import run_bench
    from lenet_edge.fsutil import check_output_dir

    out = check_output_dir(out, command="bench", record="bench.json")
    rec = run_bench(out, variants=variants, epochs=epochs, data_dir=data_dir, quiet=quiet)
    click.echo(
        f"bench finished in {rec['bench_wall_seconds'] / 60:.1f} min: "
        f"{out / 'BENCHMARKS.md'}, {out / 'bench.json'}"
    )
