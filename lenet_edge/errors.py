"""Error types shared by every command.

A :class:`LenetEdgeError` carries a one-line, actionable message; the CLI prints it as
``error: <message>`` and exits with :attr:`exit_code` (1 for failures, 2 for usage errors).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class LenetEdgeError(Exception):
    """A failure the user can act on. ``str(err)`` is a single line."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class DataError(LenetEdgeError):
    """MNIST files are missing, truncated, corrupted or cannot be fetched."""


class ModelFileError(LenetEdgeError):
    """A model file is missing, unreadable or of the wrong kind."""


class GateError(LenetEdgeError):
    """A quality gate (for example ``--min-accuracy``) was not met."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (or its type name), at most ``limit`` characters:
    how a foreign exception is quoted in a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
