"""The errors of ``lenet-edge mcu-test``: one line each, with their exit codes."""

from __future__ import annotations

from firmware_export.errors import FirmwareExportError


class McuError(FirmwareExportError):
    """A build, run or check on the emulated board failed (exit 1)."""


class McuUsageError(FirmwareExportError):
    """A bad argument: unknown board, too many images, ... (exit 2)."""

    exit_code = 2
