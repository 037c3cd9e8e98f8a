"""Options and parameter types shared by several commands: each is declared once, here.

Conventions (README, "Exit codes and error messages"):

* every float option is a :class:`FiniteFloat` (NaN and infinities are refused, exit 2) and
  every integer option has an upper bound (:data:`MAX_SEED` for ``--seed``);
* ``--json FILE`` always names a file, ``-`` meaning standard output (the JSON then replaces
  the text report there);
* defaults are shown by click (``[default: ...]``) in every ``--help``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from lenet_edge.fsutil import Input

F = Callable[..., Any]

#: ``--seed`` takes 0 <= seed <= MAX_SEED (NumPy and TensorFlow seeds are 32-bit).
MAX_SEED = 2**32 - 1


def _finite(value: Any, param_type: click.ParamType, param: Any, ctx: Any) -> float:
    """``value`` as a finite float, or a usage error naming the option."""
    if isinstance(value, bool):
        param_type.fail(f"{value!r} is not a number", param, ctx)
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        param_type.fail(f"{value!r} is not a number", param, ctx)
    if not math.isfinite(v):
        param_type.fail(f"{value!r} is not a finite number", param, ctx)
    return v


class FiniteFloat(click.FloatRange):
    """A float in a range that is never NaN or infinite (click's FloatRange lets NaN through:
    every comparison with NaN is false)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(_finite(value, self, param, ctx), param, ctx)


class PercentType(click.ParamType):
    """An accuracy in percent: ``99.1`` or ``99.1%``. Fractions (<= 1), NaN and infinities are
    refused."""

    name = "PERCENT"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float) and math.isfinite(value):
            return value
        text = str(value).strip().rstrip("%").strip()
        try:
            float(text)
        except ValueError:
            self.fail(f"{value!r} is not a number (give a percentage such as 99.0)", param, ctx)
        v = _finite(text, self, param, ctx)
        if not 1.0 < v <= 100.0:
            hint = f" ({v} looks like a fraction; write {100 * v:g})" if 0 < v <= 1 else ""
            self.fail(f"{value} is not a percentage in (1, 100]{hint}", param, ctx)
        return v


def count(lo: int, hi: int) -> click.IntRange:
    """An integer option's type: always bounded above, so `--n 2**70` is a usage error."""
    return click.IntRange(min=lo, max=hi)


def data_dir_option(f: F) -> F:
    """``--data-dir`` (also ``$LENET_EDGE_DATA``)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=str),
        envvar="LENET_EDGE_DATA",
        default=None,
        show_default="the user cache, ~/.cache/lenet-edge/mnist",
        help="Directory with MNIST (IDX, .gz or mnist.npz), also $LENET_EDGE_DATA. When given, "
        "MNIST must be there (`lenet-edge data fetch --data-dir DIR` puts it there).",
    )(f)


def seed_option(f: F) -> F:
    """``--seed``."""
    return click.option(
        "--seed",
        type=count(0, MAX_SEED),
        default=0,
        show_default=True,
        help="Random seed (0 to 2**32-1); the same seed gives the same result.",
    )(f)


def quiet_option(f: F) -> F:
    """``--quiet``."""
    return click.option(
        "--quiet", "-q", is_flag=True, help="Nothing on stderr but errors (no progress)."
    )(f)


def json_option(text: str) -> Callable[[F], F]:
    """``--json FILE``: write the command's figures as JSON to FILE, ``-`` for stdout."""

    def deco(f: F) -> F:
        return click.option(
            "--json",
            "json_out",
            type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
            default=None,
            metavar="FILE",
            help=f"{text} `-` writes it to stdout instead of the text report.",
        )(f)

    return deco


def json_to_stdout(json_out: Path | None) -> bool:
    """Whether ``--json -`` asked for the JSON on stdout (in place of the text report)."""
    return json_out is not None and str(json_out) == "-"


def write_json(json_out: Path, doc: Any) -> None:
    """Write ``doc`` for ``--json FILE`` (atomically) or ``--json -`` (stdout)."""
    if json_to_stdout(json_out):
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    from lenet_edge.errors import LenetEdgeError
    from lenet_edge.fsutil import atomic_write_json

    try:
        atomic_write_json(json_out, doc)
    except OSError as exc:
        raise LenetEdgeError(
            f"cannot write {json_out}: {exc.strerror or exc}; nothing was written"
        ) from None


def check_json_output(json_out: Path | None, *inputs: Input) -> None:
    """Fail before any work when ``--json FILE`` cannot be written or is one of ``inputs``
    (paths, or ``(what, path)`` pairs; the one output check,
    :func:`lenet_edge.fsutil.check_output_file`)."""
    if json_out is None or json_to_stdout(json_out):
        return
    from lenet_edge.fsutil import check_output_file

    check_output_file(json_out, inputs, option="--json")


def out_option(
    text: str,
    *,
    directory: bool,
    default: Path | None = None,
) -> Callable[[F], F]:
    """``--out``: an output directory or file, required unless it has a default."""

    def deco(f: F) -> F:
        extra: dict[str, Any] = (
            {"required": True} if default is None else {"default": default, "show_default": True}
        )
        return click.option(
            "--out",
            "out",
            type=click.Path(path_type=Path, file_okay=True, dir_okay=directory),
            metavar="DIR" if directory else "FILE",
            help=text,
            **extra,
        )(f)

    return deco
