"""The ``lenet-edge`` command line.

Each command lives in ``lenet_edge/commands/<name>.py`` and exposes ``command``. Heavy imports
(TensorFlow, interpreters) happen inside the commands, so ``--help`` stays fast.

Exit codes: 0 success; 1 failure (bad input file, failed check, failed gate, stdout that
cannot be written); 2 usage error (unknown option, out-of-range value, contradictory flags);
130 interrupted (SIGINT), 143 terminated (SIGTERM), 141 the reader of stdout went away.
"""

from __future__ import annotations

import os
import signal
import sys


def _started_as_entry() -> bool:
    """Whether this process is ``lenet-edge`` itself (console script or ``python -m``), not a
    program importing the CLI (tests)."""
    arg0 = sys.argv[0] if sys.argv else ""
    return os.path.basename(arg0) == "lenet-edge" or arg0.endswith(
        os.path.join("lenet_edge", "__main__.py")
    )


def _quiet_exit(signum: int, frame: object) -> None:
    os._exit(128 + signum)  # nothing has been written yet: leave at once, without a traceback


def _occupy_closed_std_fds() -> None:
    """A closed fd 0, 1 or 2 would be reused by the next file opened (an output could then
    receive what is printed): hold each closed one with /dev/null. ``sys.stdout`` stays None
    for a closed fd 1, which :func:`main` reports."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


if _started_as_entry():
    # First thing, before the heavy imports below: Ctrl-C (or SIGTERM) now exits quietly.
    signal.signal(signal.SIGINT, _quiet_exit)
    signal.signal(signal.SIGTERM, _quiet_exit)
    _occupy_closed_std_fds()

import contextlib  # noqa: E402 - after the signal handlers, on purpose
import errno  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from lenet_edge import __version__  # noqa: E402
from lenet_edge.errors import (  # noqa: E402
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_USAGE,
    Interrupted,
    LenetEdgeError,
    StdoutError,
    interrupt_exit_code,
    raise_interrupted,
)

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
    "package",
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


#: The message of an interrupted command (exit 130 or 143). Every output is written to a
#: temporary path and renamed into place, so it is true whenever the interrupt comes.
INTERRUPTED = "interrupted; outputs written so far are complete, nothing partial was left"


def printable(text: str) -> str:
    """``text`` on one line, with the bytes of a non-UTF-8 file name shown as ``\\xff``."""
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return " ".join(text.split())


class _GuardedStdout(io.TextIOWrapper):
    """sys.stdout whose write errors raise :class:`StdoutError`, so they are told apart from
    the errors of output files wherever they happen."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as exc:
            raise StdoutError(exc) from None

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            raise StdoutError(exc) from None


def _guard_stdout() -> None:
    """Replace sys.stdout (a plain text file on fd 1) by a :class:`_GuardedStdout` that prints
    non-UTF-8 file names as their bytes, as ls does."""
    out = sys.stdout
    if type(out) is not io.TextIOWrapper:
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):
        out.flush()
        sys.stdout = _GuardedStdout(
            out.buffer,
            encoding=out.encoding,
            errors="surrogateescape",
            line_buffering=out.line_buffering,
        )


def _stdout_failure() -> OSError | None:
    """The error that flushing stdout gives now, or None."""
    if sys.stdout is None:
        return OSError(errno.EBADF, "standard output is closed")
    try:
        sys.stdout.flush()
    except StdoutError as exc:
        return exc.error
    except OSError as exc:
        return exc
    except ValueError:  # the stream object was closed
        return OSError(errno.EBADF, "standard output is closed")
    return None


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so that nothing (the interpreter's last flush included) fails
    again on it: no "Exception ignored ... BrokenPipeError" at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def _stdout_error_code(exc: OSError) -> int:
    """Report a stdout that cannot be written: quietly for a reader that went away (as Unix
    tools do, exit 141), else one line (exit 1)."""
    _silence_stdout()
    if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
        return EXIT_BROKEN_PIPE
    _error(f"cannot write to standard output: {exc.strerror or exc}")
    return EXIT_FAILURE


def _error(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr gone too: the exit code remains
        click.echo(f"error: {text}", err=True)


def _known_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [LenetEdgeError]
    try:
        from firmware_export.errors import FirmwareExportError

        errors.append(FirmwareExportError)
    except ImportError:  # pragma: no cover - the package is part of this distribution
        pass
    return tuple(errors)


def _interrupted_code(exc: BaseException) -> int:
    cause = exc if isinstance(exc, Interrupted) else exc.__cause__ or exc.__context__
    return cause.exit_code if isinstance(cause, Interrupted) else interrupt_exit_code()


def _invoke(argv: list[str] | None) -> int:
    """Run the command; every failure becomes one ``error:`` line and an exit code."""
    prog = "lenet-edge"
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        with cli.make_context(prog, args) as ctx:
            rv: Any = cli.invoke(ctx)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=False)
        return 0
    except click.exceptions.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        _error(f"{printable(exc.format_message())}{hint}")
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:  # click's form of KeyboardInterrupt
        _error(INTERRUPTED)
        return _interrupted_code(exc)
    except click.exceptions.ClickException as exc:
        _error(printable(exc.format_message()))
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C (SIGINT) or SIGTERM
        _error(INTERRUPTED)
        return _interrupted_code(exc)
    except StdoutError as exc:
        return _stdout_error_code(exc.error)
    except _known_errors() as exc:
        _error(printable(str(exc)))
        return int(getattr(exc, "exit_code", EXIT_FAILURE))
    except Exception as exc:
        if isinstance(exc, BrokenPipeError):  # stderr's reader went away (`2>&1 | head`)
            return _stdout_error_code(exc)
        if isinstance(exc, OSError) and exc.errno in _SYSTEM_ERRNOS:
            # The system, not lenet-edge: a full disk (TensorFlow's temporary files), a
            # file-name loop, a read-only file system met outside the checked outputs.
            where = f"{printable(exc.filename)}: " if exc.filename else ""
            _error(f"{where}{exc.strerror or os.strerror(exc.errno or 0)}")
            return EXIT_FAILURE
        if os.environ.get("LENET_EDGE_DEBUG"):
            raise
        _error(
            f"internal error, {type(exc).__name__}: {printable(str(exc))[:300]} "
            "(rerun with LENET_EDGE_DEBUG=1 for a traceback and report it)"
        )
        return EXIT_FAILURE


#: OSErrors that only the system causes; reported as they are, never as an internal error.
_SYSTEM_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ELOOP, errno.EIO, errno.EMFILE, errno.ENFILE}
)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every failure into one line and an exit code.

    SIGINT and SIGTERM raise :class:`~lenet_edge.errors.Interrupted` (a KeyboardInterrupt)
    while the command runs, so atomic writes clean up and train keeps its best checkpoint;
    the exit code is 128 + the signal (130, 143). A stdout that cannot be written is one
    ``error:`` line and exit 1; a reader that went away (``| head -1``) is a quiet exit 141.
    """
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        _error("standard output is closed; run with stdout open (e.g. `> FILE` or `> /dev/null`)")
        return EXIT_FAILURE
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, raise_interrupted)
    try:
        code = _invoke(argv)
    except KeyboardInterrupt as exc:  # an interrupt while an error was being reported
        code = _interrupted_code(exc)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    broken = _stdout_failure()
    if broken is not None:
        code = _stdout_error_code(broken) if code == 0 else code
        _silence_stdout()
    return int(code)


def run() -> None:  # pragma: no cover - console script shim
    """Console-script entry point."""
    _guard_stdout()
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
