"""Minimal progress reporting on stderr (a live bar on a terminal, sparse lines otherwise)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TypeVar

T = TypeVar("T")


def _say(text: str) -> None:
    """Write progress to stderr, best effort: a closed or full stderr never stops the work."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()


class Progress:
    """Counts ``total`` steps and reports them under ``label``.

    On a terminal the bar is redrawn in place; elsewhere (CI logs, pipes) a line is printed at
    every 25 %, so logs stay short. ``quiet`` silences it.
    """

    def __init__(self, total: int, label: str, *, quiet: bool = False, unit: str = "") -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.quiet = quiet
        self.unit = unit
        self.count = 0
        self.start = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last_draw = 0.0
        self._next_mark = 0.25

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps."""
        self.count += n
        if self.quiet:
            return
        frac = min(self.count / self.total, 1.0)
        if self._tty:
            now = time.perf_counter()
            if now - self._last_draw > 0.1 or self.count >= self.total:
                self._last_draw = now
                width = 30
                bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
                _say(
                    f"\r{self.label} [{bar}] {self.count}/{self.total}{self.unit} "
                    f"{now - self.start:5.1f}s"
                )
        elif frac >= self._next_mark or self.count >= self.total:
            while self._next_mark <= frac:
                self._next_mark += 0.25
            _say(
                f"{self.label}: {self.count}/{self.total}{self.unit} "
                f"({time.perf_counter() - self.start:.1f}s)\n"
            )

    def close(self) -> None:
        """Finish the bar line on a terminal."""
        if self._tty and not self.quiet:
            _say("\n")
