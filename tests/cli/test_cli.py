"""The command line: --help everywhere, --version, one-line usage errors."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from lenet_edge import __version__
from lenet_edge.cli import INTERRUPTED, cli, main, printable
from lenet_edge.errors import EXIT_BROKEN_PIPE


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


# ---------------------------------------------------------------- one convention for options


def _params(cmd: click.Command) -> list[click.Parameter]:
    return [p for p in cmd.params if p.name not in ("help", "version")]


def _commands() -> list[tuple[str, click.Command]]:
    out = []
    for path in _all_commands(cli):
        cmd: click.Command = cli
        for name in path:
            assert isinstance(cmd, click.Group)
            cmd = cmd.commands[name]
        if not isinstance(cmd, click.Group):
            out.append((" ".join(path), cmd))
    return out


def test_every_number_option_is_finite_and_bounded() -> None:
    """Floats refuse NaN and inf (one shared type); every integer has an upper bound."""
    from lenet_edge.commands._common import FiniteFloat, PercentType

    seen = 0
    for name, cmd in _commands():
        for p in _params(cmd):
            t = p.type
            if isinstance(t, click.types.FloatParamType) or t is click.FLOAT:
                assert isinstance(t, FiniteFloat), (name, p.name)
                seen += 1
            elif isinstance(t, click.types.IntParamType):
                assert isinstance(t, click.IntRange) and t.max is not None, (name, p.name)
                seen += 1
            elif isinstance(t, PercentType):
                seen += 1
    assert seen >= 10


def _number_options() -> list[tuple[str, str, str]]:
    out = []
    for name, cmd in _commands():
        for p in _params(cmd):
            if not isinstance(p, click.Option) or p.is_flag:
                continue
            if isinstance(p.type, click.types.FloatParamType) or p.type.name == "PERCENT":
                out += [(name, p.opts[0], v) for v in ("nan", "inf", "-inf")]
            if isinstance(p.type, click.IntRange):
                out.append((name, p.opts[0], str(2**70)))
    return out


@pytest.mark.parametrize("name,opt,value", _number_options(), ids=lambda v: str(v)[:20])
def test_nan_inf_and_huge_numbers_are_usage_errors(
    name: str, opt: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*name.split(), "ARG", f"{opt}={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Invalid value for '{opt}'") and "\n" not in err, err
    assert "not a finite number" in err or "is not in the range" in err, err


def test_json_means_a_file_everywhere() -> None:
    """Every --json is the shared `--json FILE` option (`-` for stdout), never a flag."""
    found = []
    for name, cmd in _commands():
        for p in _params(cmd):
            if isinstance(p, click.Option) and "--json" in p.opts:
                assert not p.is_flag and p.metavar == "FILE", name
                assert isinstance(p.type, click.Path) and p.type.allow_dash, name
                found.append(name)
    assert {"data info", "verify", "predict", "mcu-test"} <= set(found), found


UNSET = getattr(click.core, "UNSET", object())  # click >= 8.3: the default of no default


def test_defaults_are_shown_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option with a default value says so through click's `[default: ...]`."""
    for name, cmd in _commands():
        if name == "report":  # owned elsewhere
            continue
        for p in _params(cmd):
            if not isinstance(p, click.Option) or p.is_flag or p.required:
                continue
            if p.default is not None and p.default is not UNSET and p.default != ():
                assert p.show_default, (name, p.name)
        assert main([*name.split(), "--help"]) == 0
        assert "(default " not in capsys.readouterr().out, name


# ---------------------------------------------------------------- signals and stdout


def _spawn(argv: list[str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lenet_edge", *argv],
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("delay", [0.3, 0.8, 2.0])
def test_interrupt_at_any_time_is_quiet(sig: int, code: int, delay: float) -> None:
    """Ctrl-C or SIGTERM while Python, click, TensorFlow load or the command runs: exit
    128+signal, at most the one `error: interrupted` line, never a traceback."""
    proc = _spawn(["model", "summary"], stdout=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the command finished before the signal")  # a very fast machine
    if proc.returncode == -sig or ("Traceback" in err and "lenet_edge" not in err):
        # a loaded machine: Python's own start-up, before lenet-edge's first line
        pytest.skip("the signal came before Python had started running lenet-edge")
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.splitlines()
    assert lines in ([], [f"error: {INTERRUPTED}"]), err


def test_stdout_closed_is_one_error_line() -> None:
    """`lenet-edge ... >&-`: refused before any work (a file opened later would get fd 1)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lenet_edge", "data", "info", "--help"],
        stderr=subprocess.PIPE, text=True, check=False, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: standard output is closed; run with stdout open (e.g. `> FILE` or `> /dev/null`)"
    ]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_device_is_one_error_line() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "lenet_edge", "data", "info", "--help"],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: cannot write to standard output: No space left on device"
    ]


def test_reader_closing_the_pipe_is_a_quiet_exit_141() -> None:
    """`lenet-edge ... | head -1`: as Unix tools, no message (and no "Exception ignored ...
    BrokenPipeError" at shutdown), exit 141 (128 + SIGPIPE)."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lenet_edge", "--help"],
            stdout=w, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    finally:
        os.close(w)
    assert proc.returncode == EXIT_BROKEN_PIPE
    assert proc.stderr == ""


def test_head_reads_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        f"{shlex.quote(sys.executable)} -m lenet_edge --help | head -1",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.stdout.startswith("Usage: lenet-edge")
    assert proc.stderr == ""


def test_main_restores_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert main(["--version"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_printable_shows_non_utf8_bytes() -> None:
    name = os.fsdecode(b"model\xff.tflite")
    assert printable(f"{name}: no such\nfile") == "model\\xff.tflite: no such file"
