"""Safe output: atomic writes that never destroy an input or data lenet-edge did not write.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted or
failed command never leaves a half-written file behind. The temporaries are named
``.<name>.<pid>.<random>.tmp`` (a directory for :func:`atomic_dir`): an interrupt (SIGINT,
SIGTERM, an error) removes them on the way out; only SIGKILL or a power cut can leave one,
and the next write of the same output removes those whose process no longer exists
(:func:`remove_stale_temps`). The final path is always either the previous complete output
or the new complete one.

Before anything is written, one check guards every ``--out`` and ``--json``:

- an output is never one of the command's inputs, however spelled (relative, ``..``,
  symlinks, hard links: compared by device and inode) — :func:`check_not_input`;
- an existing directory is replaced or written into only when it is empty or a previous
  output of the same command, recognised by the record that command writes there
  (``export.json``, ``train.json``, ``bench.json``) — :func:`check_output_dir`;
- special files stay what they are: ``-``, ``/dev/stdout``, character devices, pipes and
  sockets are written through, never replaced; a symlink is followed and its target replaced
  atomically, so the link stays a link (:func:`resolve_output`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# One digest for both packages, re-exported for the host side.
from firmware_export.digest import sha256_bytes as sha256_bytes
from firmware_export.digest import sha256_file as sha256_file
from lenet_edge.errors import EXIT_USAGE, LenetEdgeError

#: The output name that means standard output.
STDOUT = "-"


class OutputRefused(LenetEdgeError):
    """An output that would overwrite an input or data lenet-edge did not write (exit 2)."""

    exit_code = EXIT_USAGE


def _show(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: non-printable bytes escaped, never raw control codes."""
    text = os.fsdecode(path)
    return (
        text.encode("unicode_escape", "backslashreplace").decode("ascii")
        if not (text.isprintable())
        else text
    )


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a stream to write through rather than a file to replace:
    ``-``, ``/dev/stdout``-style descriptors, character devices, FIFOs and sockets."""
    text = os.fspath(path)
    if text == STDOUT:
        return True
    if text in ("/dev/stdout", "/dev/stderr") or text.startswith(("/dev/fd/", "/proc/self/fd/")):
        return True  # the descriptor's file may be the shell's: never replace it
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def resolve_output(path: str | os.PathLike[str]) -> Path:
    """The file an output really replaces: ``path`` with every symlink followed (a dangling
    link names the file it will create). A symlink loop is refused."""
    p = Path(path)
    if not p.is_symlink():
        return p
    try:
        return Path(os.path.realpath(p, strict=True))
    except FileNotFoundError:  # a dangling link: the file it names is created
        return Path(os.path.realpath(p))
    except OSError as exc:  # ELOOP and the like
        raise OutputRefused(
            f"{_show(p)}: {exc.strerror or exc} (a symlink loop?); give another path"
        ) from None


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _inside(child: Path, parent: Path) -> bool:
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip(os.sep) + os.sep)


#: An input: a path, or ``(what, path)`` to name it in the message ("the model").
Input = str | os.PathLike[str] | tuple[str, str | os.PathLike[str] | None] | None


def check_not_input(
    out: str | os.PathLike[str],
    inputs: Sequence[Input],
    *,
    option: str = "--out",
    directory: bool = False,
) -> None:
    """Refuse an output that is one of ``inputs`` (the same file by device and inode, so
    relative spellings, ``..``, symlinks and hard links all count) or, for a ``directory``
    output that gets replaced as a whole, one that contains an input."""
    if is_stream(out):
        return
    out_id = _identity(out)
    for item in inputs:
        what, inp = item if isinstance(item, tuple) else (None, item)
        if inp is None or os.fspath(inp) == STDOUT:
            continue
        what = what or f"the input {_show(inp)}"
        if out_id is not None and out_id == _identity(inp):
            raise OutputRefused(f"{option} {_show(out)} would overwrite {what}; give another path")
        if directory and _inside(Path(inp), Path(out)):
            raise OutputRefused(
                f"{option} {_show(out)} contains {what}; replacing the directory would delete "
                "it, give another path"
            )


#: The tools whose records mark a directory as a previous output (their ``"tool"`` key).
RECORD_TOOLS = ("lenet-edge ", "firmware_export ")


def _owned(directory: Path, record: str) -> bool:
    """Whether ``directory`` holds ``record``, written by this toolkit (``"tool"`` key)."""
    try:
        doc = json.loads((directory / record).read_bytes())
    except (OSError, ValueError):
        return False
    # "lenet-edge X" from the CLI, "firmware_export X" from the library used on its own.
    return isinstance(doc, dict) and str(doc.get("tool", "")).startswith(RECORD_TOOLS)


def check_output_dir(
    out: str | os.PathLike[str],
    *,
    command: str,
    record: str,
    inputs: Sequence[Input] = (),
    option: str = "--out",
) -> Path:
    """Check a directory output before any work; return the directory really written.

    It may not exist yet, be empty, or be a previous output of ``command`` (it holds the
    ``record`` that command writes). Anything else, a project folder, ``$HOME`` or ``.``, is
    refused with exit 2, naming what is there: lenet-edge never deletes or overwrites what
    it did not write. A symlink to a directory is followed (the link stays)."""
    if is_stream(out):
        raise OutputRefused(f"{option} {_show(out)} is not a directory; give a directory path")
    final = resolve_output(out)
    check_not_input(final, inputs, option=option, directory=True)
    if final.exists() and not final.is_dir():
        raise OutputRefused(
            f"{option} {_show(out)} exists and is a file; give a directory path for the output"
        )
    if final.is_dir():
        try:
            entries = sorted(e.name for e in final.iterdir())
        except OSError as exc:
            raise LenetEdgeError(f"cannot read {_show(out)}: {exc.strerror or exc}") from None
        if entries and not _owned(final, record):
            shown = ", ".join(_show(e) for e in entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise OutputRefused(
                f"{option} {_show(out)} already holds files that `lenet-edge {command}` did not "
                f"write ({shown}); give a new or empty directory (or a previous output of "
                f"`lenet-edge {command}`, recognised by its {record})"
            )
    check_writable_dir(final)
    return final


def check_writable_dir(path: Path) -> None:
    """Fail early when ``path`` (or its nearest existing parent) cannot hold new files."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise LenetEdgeError(f"{probe} is a file, not a directory; choose another output path")
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:  # named as such: "permission denied" would send the user the wrong way
        raise LenetEdgeError(
            f"cannot write to {probe}: read-only file system; choose another output path"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LenetEdgeError(
            f"cannot write to {probe}: permission denied; choose another output path"
        )


def check_output_file(
    path: str | os.PathLike[str],
    inputs: Sequence[Input] = (),
    *,
    option: str = "--out",
) -> None:
    """Fail early when ``path`` cannot be written as a file, or is one of ``inputs``."""
    if is_stream(path):
        return
    final = resolve_output(path)
    check_not_input(final, inputs, option=option)
    if final.is_dir():
        raise OutputRefused(
            f"{option} {_show(path)} is a directory; give a file path for the output"
        )
    check_writable_dir(final.parent)


#: Test hook: ``LENET_EDGE_FAULT_STOP=<point>`` makes the process stop itself (SIGSTOP) at
#: that point of an atomic write, so that a test can kill it exactly there. Points:
#: ``atomic_path:written`` (temporary file complete, not yet renamed), ``atomic_dir:written``
#: (temporary tree complete, not yet swapped in) and ``atomic_dir:swapped`` (new tree in
#: place, the previous one not yet removed).
FAULT_ENV = "LENET_EDGE_FAULT_STOP"


def _fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
        # A signal sent while stopped may be taken by any thread on SIGCONT; give its handler
        # time to run so that it acts here, at the point, not a few statements later.
        time.sleep(0.05)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    Used around the commit of an atomic write and its cleanup: an interrupt that lands there
    must not cut a rename or an ``rmtree`` in half (which would leave a partial temporary), so
    it is recorded and re-raised once the block is done. Only the main thread can install
    handlers; elsewhere (or with a handler installed outside Python) this is a no-op.
    """
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is not threading.main_thread() or None in saved.values():
        yield  # handlers cannot be swapped here (another thread, or installed outside Python)
        return
    pending: list[int] = []

    def record(signum: int, frame: object) -> None:
        pending.append(signum)

    for s in saved:
        signal.signal(s, record)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM)
        return True
    return True


def remove_stale_temps(final: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``final`` (see the module docstring) left behind by
    processes that no longer exist; return what was removed. Never touches other files."""
    final = Path(final)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(\d+)\.[A-Za-z0-9_]+\.tmp(\.[a-z]+)?")
    removed: list[Path] = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A symlink's target is replaced (the link stays); a stream (``-``, a device, a pipe) gets
    the complete bytes written through once the temporary is done, and is never replaced."""
    if is_stream(path):
        with _stream_path(path) as stream_tmp:
            yield stream_tmp
        return
    final = resolve_output(path)
    check_output_file(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        _fault_point("atomic_path:written")
        with signals_deferred():
            os.replace(tmp_path, final)
    finally:
        with signals_deferred():
            if tmp_path.exists():
                tmp_path.unlink()


@contextlib.contextmanager
def _stream_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A private temporary (in ``$TMPDIR``) whose bytes go to the stream on success."""
    fd, tmp = tempfile.mkstemp(prefix=".lenet-edge.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        data = tmp_path.read_bytes()
        if os.fspath(path) == STDOUT:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            with open(path, "wb") as f:  # write through: the device or pipe stays what it is
                f.write(data)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented, key-sorted JSON (UTF-8, final newline): how outputs store JSON."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    atomic_write_bytes(path, json_bytes(obj))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(rc == 0)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], *, command: str | None = None, record: str | None = None
) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` as a whole.

    An existing ``path`` is kept until the new tree is complete, then swapped with it in one
    atomic step, so a reader (or a kill at any moment) sees either the old tree or the new one.
    With ``command`` and ``record`` the existing tree is checked (:func:`check_output_dir`)
    on entry and again just before the swap, so that what is replaced is always a previous
    output of that command. A symlink to a directory stays a link: its target is replaced.
    """
    final = Path(os.path.abspath(resolve_output(path)))  # a symlinked directory: its target
    if final.exists() and not final.is_dir():
        raise OutputRefused(
            f"{_show(path)} exists and is a file; give a directory path for the output"
        )
    if command is not None and record is not None:
        check_output_dir(final, command=command, record=record)
    check_writable_dir(final.parent)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent))
    old: Path | None = None
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        _fault_point("atomic_dir:written")
        if command is not None and record is not None:  # it may have changed meanwhile
            check_output_dir(final, command=command, record=record)
        # From here on an interrupt is held until the swap and the removal of the previous
        # tree are done: the command then stops with the new output complete and no temporary.
        with signals_deferred():
            if final.exists():
                if _exchange(tmp, final):
                    old, tmp = tmp, final  # ``tmp`` now names the previous tree
                else:
                    old = final.with_name(f"{_temp_prefix(final)}old.tmp")
                    os.replace(final, old)
                    os.replace(tmp, final)
            else:
                os.replace(tmp, final)
            _fault_point("atomic_dir:swapped")
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        with signals_deferred():
            if tmp != final and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and old.exists():
                shutil.rmtree(old, ignore_errors=True)
