"""Atomic file output and hashing.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted or
failed command never leaves a half-written file behind. The temporaries are named
``.<name>.<pid>.<random>.tmp`` (a directory for :func:`atomic_dir`): an interrupt (SIGINT,
SIGTERM, an error) removes them on the way out; only SIGKILL or a power cut can leave one,
and the next write of the same output removes those whose process no longer exists
(:func:`remove_stale_temps`). The final path is always either the previous complete output
or the new complete one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# One digest for both packages, re-exported for the host side.
from firmware_export.digest import sha256_bytes as sha256_bytes
from firmware_export.digest import sha256_file as sha256_file
from lenet_edge.errors import LenetEdgeError


def check_writable_dir(path: Path) -> None:
    """Fail early when ``path`` (or its nearest existing parent) cannot hold new files."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise LenetEdgeError(f"{probe} is a file, not a directory; choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LenetEdgeError(
            f"cannot write to {probe}: permission denied; choose another output path"
        )


def check_output_file(path: Path) -> None:
    """Fail early when ``path`` cannot be written as a file."""
    if path.is_dir():
        raise LenetEdgeError(f"{path} is a directory; give a file path for the output")
    check_writable_dir(path.parent)


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
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    final = Path(path)
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
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` as a whole.

    An existing ``path`` is kept until the new tree is complete, then swapped with it in one
    atomic step, so a reader (or a kill at any moment) sees either the old tree or the new one.
    """
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise LenetEdgeError(f"{final} exists and is a file; give a directory path for the output")
    check_writable_dir(final.parent if final.parent != Path("") else Path("."))
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent))
    old: Path | None = None
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        _fault_point("atomic_dir:written")
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
