"""The error type of ``firmware_export``."""

from __future__ import annotations


class FirmwareExportError(Exception):
    """A model cannot be read or exported. ``str(err)`` is one line listing what is wrong."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
