"""The command line: --help everywhere, --version, one-line usage errors."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from lenet_edge import __version__
from lenet_edge.cli import cli, main


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        out.append(path)
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, path)
    return out


@pytest.mark.parametrize("path", [(), *_all_commands(cli)], ids=lambda p: " ".join(p) or "root")
def test_help_for_every_command(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: lenet-edge")
    assert "--help" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_usage_error_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lenet_edge", "train", "--epochs", "0", "--out", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--epochs" in lines[0]
    assert "Traceback" not in proc.stderr
