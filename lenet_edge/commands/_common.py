"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def data_dir_option(f: F) -> F:
    """``--data-dir`` (also ``$LENET_EDGE_DATA``)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=str),
        envvar="LENET_EDGE_DATA",
        default=None,
        help="Directory with MNIST (IDX, .gz or mnist.npz). Default: the user cache "
        "(~/.cache/lenet-edge/mnist), fetched when missing.",
    )(f)


def seed_option(f: F) -> F:
    """``--seed``."""
    return click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Random seed; the same seed gives the same result.",
    )(f)


def quiet_option(f: F) -> F:
    """``--quiet``."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress output.")(f)
