"""The ``lenet-edge`` command line.

Each command lives in ``lenet_edge/commands/<name>.py`` and exposes ``command``. Heavy imports
(TensorFlow, interpreters) happen inside the commands, so ``--help`` stays fast.

Exit codes: 0 success; 1 failure (bad input file, failed check, failed gate); 2 usage error
(unknown option, out-of-range value, contradictory flags); 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from lenet_edge import __version__
from lenet_edge.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, LenetEdgeError

COMMAND_MODULES = (
    "data",
    "model",
    "train",
    "export_c",
    "quantize",
    "verify",
    "mcu_test",
    "bench",
    "report",
    "predict",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="lenet-edge")
def cli() -> None:
    """lenet-edge: LeNet-5 from MNIST training to int8 C on a Cortex-M.

    Typical flow: train -> quantize -> verify -> export-c -> mcu-test.
    """


for _name in COMMAND_MODULES:
    _mod = importlib.import_module(f"lenet_edge.commands.{_name}")
    cli.add_command(_mod.command)


#: The message of an interrupted command (exit 130). Every output is written to a temporary
#: path and renamed into place, so it is true whenever the interrupt comes.
INTERRUPTED = "interrupted; outputs written so far are complete, nothing partial was left"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _known_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [LenetEdgeError]
    try:
        from firmware_export.errors import FirmwareExportError

        errors.append(FirmwareExportError)
    except ImportError:  # pragma: no cover - the package is part of this distribution
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    prog = "lenet-edge"
    try:
        rv = cli.main(args=argv, prog_name=prog, standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=False)
        code = 0
    except click.exceptions.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        code = EXIT_USAGE
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt (Ctrl-C, SIGINT)
        click.echo(f"error: {INTERRUPTED}", err=True)
        code = EXIT_INTERRUPTED
    except click.exceptions.ClickException as exc:
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo(f"error: {INTERRUPTED}", err=True)
        code = EXIT_INTERRUPTED
    except _known_errors() as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        code = getattr(exc, "exit_code", EXIT_FAILURE)
    except Exception as exc:
        if os.environ.get("LENET_EDGE_DEBUG"):
            raise
        click.echo(
            f"error: internal error, {type(exc).__name__}: {_one_line(str(exc))[:300]} "
            "(rerun with LENET_EDGE_DEBUG=1 for a traceback and report it)",
            err=True,
        )
        code = EXIT_FAILURE
    sys.stdout.flush()
    return int(code)


def run() -> None:  # pragma: no cover - console script shim
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
