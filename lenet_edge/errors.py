"""Error types shared by every command.

A :class:`LenetEdgeError` carries a one-line, actionable message; the CLI prints it as
``error: <message>`` and exits with :attr:`exit_code` (1 for failures, 2 for usage errors).
"""

from __future__ import annotations

import errno
import signal

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: 128 + the signal number, as shells report a process killed by it.
EXIT_INTERRUPTED = 128 + int(signal.SIGINT)  # 130: Ctrl-C
EXIT_BROKEN_PIPE = 128 + int(signal.SIGPIPE)  # 141: the reader of stdout went away (`| head -1`)
EXIT_TERMINATED = 128 + int(signal.SIGTERM)  # 143: `timeout`, `kill`, `docker stop`, CI cancel


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised as a KeyboardInterrupt so that every cleanup path (atomic
    writes, train's best checkpoint) runs the same way for both."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


#: The signal of the latest interrupt (SIGINT until one arrives).
_last_signal = [int(signal.SIGINT)]


def raise_interrupted(signum: int, frame: object) -> None:
    """Signal handler for SIGINT and SIGTERM while a command runs."""
    _last_signal[0] = signum
    raise Interrupted(signum)


def interrupt_exit_code() -> int:
    """The exit code of an interrupted command: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + _last_signal[0]


class LenetEdgeError(Exception):
    """A failure the user can act on. ``str(err)`` is a single line."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class StdoutError(Exception):
    """Standard output cannot be written (a reader that went away, a full device, a closed
    descriptor). Not an OSError, so that no command mistakes it for a failed output file."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


class DataError(LenetEdgeError):
    """MNIST files are missing, truncated, corrupted or cannot be fetched."""


class ModelFileError(LenetEdgeError):
    """A model file is missing, unreadable or of the wrong kind."""


class GateError(LenetEdgeError):
    """A quality gate (for example ``--min-accuracy``) was not met."""


def unreadable_input(path: object, exc: OSError, noun: str = "file") -> str:
    """The one-line reason an input at ``path`` cannot be opened or examined, telling apart a
    missing file, a loop of symbolic links, a path through a file and the rest."""
    if exc.errno == errno.ENOENT:
        return f"{path}: no such {noun}"
    if exc.errno == errno.ELOOP:
        return f"{path}: a loop of symbolic links ({exc.strerror}); fix or remove the link"
    if exc.errno == errno.ENOTDIR:
        return f"{path}: no such {noun} (a part of the path is a file, not a directory)"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{path}: file name too long"
    return f"{path}: cannot read ({exc.strerror or exc})"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (or its type name), at most ``limit`` characters:
    how a foreign exception is quoted in a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
