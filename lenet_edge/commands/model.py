"""``lenet-edge model summary``."""

from __future__ import annotations

import click

from lenet_edge.model import ACTIVATIONS, C3_MODES, POOLINGS, VARIANTS


def model_options(f: click.decorators.FC) -> click.decorators.FC:
    """``--variant`` and the override flags."""
    f = click.option(
        "--c3",
        type=click.Choice(C3_MODES),
        default=None,
        show_default="per variant",
        help="C3 connections: sparse (LeCun Table I) or full.",
    )(f)
    f = click.option(
        "--pooling",
        type=click.Choice(POOLINGS),
        default=None,
        show_default="per variant",
        help="Pooling.",
    )(f)
    f = click.option(
        "--activation",
        type=click.Choice(ACTIVATIONS),
        default=None,
        show_default="per variant",
        help="Hidden activation.",
    )(f)
    f = click.option(
        "--variant",
        type=click.Choice(list(VARIANTS)),
        default="seed",
        show_default=True,
        help="seed: LeNet-5 of 1998 (sigmoid, avg pool, sparse C3); "
        "modern: ReLU, max pool, full C3.",
    )(f)
    return f


@click.group("model")
def command() -> None:
    """Inspect the LeNet-5 architectures."""


@command.command("summary")
@model_options
def summary_cmd(variant: str, activation: str | None, pooling: str | None, c3: str | None) -> None:
    """Print each layer with its output shape, parameters and MACs."""
    from lenet_edge.model import LeNetConfig, build_lenet, layer_table
    from lenet_edge.tfenv import tf

    tf()
    cfg = LeNetConfig.resolve(variant, activation, pooling, c3)
    rows = layer_table(build_lenet(cfg))
    click.echo(f"LeNet-5 '{cfg.variant}': {cfg.activation}, {cfg.pooling} pooling, {cfg.c3} C3")
    click.echo(f"{'layer':<9}{'type':<18}{'output':<14}{'params':>9}{'MACs':>10}")
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        click.echo(f"{r.name:<9}{r.kind:<18}{shape:<14}{r.params:>9,}{r.macs:>10,}")
    click.echo(f"{'total':<41}{sum(r.params for r in rows):>9,}{sum(r.macs for r in rows):>10,}")
