"""The ``tflite-runtime`` backend: its own cached environment and a worker subprocess.

``tflite-runtime`` stops at 2.14, whose wheels are built against NumPy 1.x; this project runs
on NumPy 2. So the backend runs in its own virtual environment (``numpy<2`` and
``tflite-runtime==2.14.*``), made on first use in
``${XDG_CACHE_HOME:-~/.cache}/lenet-edge/tflite-runtime-2.14/`` and reused afterwards, and the
model runs in a worker process (:mod:`lenet_edge.tflrt.worker`, which imports only NumPy and
``tflite_runtime``) that talks to this process through a length-prefixed binary protocol on
its stdin and stdout.

The environment is made atomically: it is built in a temporary sibling directory, a
completion marker (``lenet-edge-complete.json``) is written last, and the directory is then
renamed into place; creation is serialized by a lock file. A directory without the marker (a
creation interrupted by SIGKILL or a power cut) is removed and rebuilt. Every pip call and
every worker reply has a time limit, so an unreachable registry or a stuck worker ends in one
``error:`` line, never a hang.

``LENET_EDGE_TFLITE_RUNTIME_PYTHON`` names an existing Python that imports ``tflite_runtime``
(the cached environment is then neither used nor made).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import selectors
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import numpy as np

from lenet_edge.errors import LenetEdgeError

ENV_NAME = "tflite-runtime-2.14"
REQUIREMENTS = ("numpy<2", "tflite-runtime==2.14.*")
MARKER = "lenet-edge-complete.json"
PYTHON_ENV = "LENET_EDGE_TFLITE_RUNTIME_PYTHON"
#: Seconds pip may wait for one network read (``pip --timeout``), and for a whole install.
PIP_NETWORK_TIMEOUT = 15
PIP_TOTAL_TIMEOUT = 600
#: Seconds for the worker to start (import NumPy and tflite_runtime) or answer one frame.
WORKER_TIMEOUT = float(os.environ.get("LENET_EDGE_TFLITE_RUNTIME_TIMEOUT", "120"))
#: Images per batch frame (the parent reports progress between batches).
BATCH = 500
HEADER = struct.Struct("<cQ")
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
#: Said in every failure to set the backend up (the reason for the separate environment).
WHY = "tflite-runtime 2.14 needs NumPy < 2, so it runs in its own environment"


def env_dir() -> Path:
    """The cached environment: ``${XDG_CACHE_HOME:-~/.cache}/lenet-edge/tflite-runtime-2.14``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lenet-edge" / ENV_NAME


def _by_hand(target: Path) -> str:
    reqs = " ".join(shlex.quote(r) for r in REQUIREMENTS)
    return (
        f"create it by hand: D={shlex.quote(str(target))}; python3 -m venv $D && "
        f"$D/bin/python -m pip install {reqs} && touch $D/{MARKER}; or set {PYTHON_ENV} to a "
        "Python that has them"
    )


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def _run_step(
    cmd: list[str], what: str, timeout: float, quiet: bool, env: dict[str, str] | None = None
) -> None:
    """Run one set-up command, its output shown on stderr (unless quiet) and its last lines
    kept for the error message; kill it after ``timeout`` seconds."""
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LenetEdgeError(f"{what} took more than {timeout:.0f} s")
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if line.strip():
                    tail.append(line.strip())
                    _say(quiet, f"  {line}")
        rc = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        sel.close()
        proc.stdout.close()
    if rc != 0:
        errors = [t for t in tail if t.startswith("ERROR") or "Error" in t]
        detail = (errors or list(tail) or [f"exit status {rc}"])[-1]
        raise LenetEdgeError(f"{what} failed ({detail[:300]})")


def _check_python(python: str) -> None:
    """Raise unless ``python`` runs and imports tflite_runtime (used for the override)."""
    try:
        proc = subprocess.run(
            [python, "-I", "-c", "import numpy, tflite_runtime.interpreter"],
            capture_output=True,
            timeout=WORKER_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LenetEdgeError(
            f"{PYTHON_ENV}={python} cannot be run ({' '.join(str(exc).split())}); {WHY}, "
            f"{_by_hand(env_dir())}"
        ) from None
    if proc.returncode != 0:
        last = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
        raise LenetEdgeError(
            f"{PYTHON_ENV}={python} does not import tflite_runtime ({last[:200]}); {WHY}: "
            f"{_by_hand(env_dir())}"
        )


def _remove_dead_temporaries(parent: Path) -> None:
    for p in parent.glob(f".{ENV_NAME}.*.tmp"):
        try:
            pid = int(p.name.split(".")[-3])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def _create(target: Path, quiet: bool) -> None:
    """Build the environment in a temporary sibling, mark it complete, rename it into place."""
    parent = target.parent
    tmp = parent / f".{ENV_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    _say(
        quiet,
        f"tflite-runtime: creating its environment in {target} (once; {WHY} and "
        f"downloads about 20 MB: {', '.join(REQUIREMENTS)})",
    )
    start = time.monotonic()
    try:
        _say(quiet, "tflite-runtime: [1/2] python -m venv")
        _run_step(
            [sys.executable, "-m", "venv", str(tmp)], "python -m venv", PIP_TOTAL_TIMEOUT, quiet
        )
        env = dict(os.environ)
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        _say(quiet, f"tflite-runtime: [2/2] pip install {' '.join(REQUIREMENTS)}")
        _run_step(
            [
                str(tmp / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--progress-bar",
                "off",
                "--only-binary",
                ":all:",
                "--timeout",
                str(PIP_NETWORK_TIMEOUT),
                "--retries",
                "1",
                *REQUIREMENTS,
            ],
            "pip install",
            PIP_TOTAL_TIMEOUT,
            quiet,
            env,
        )
        _check_python(str(tmp / "bin" / "python"))
        record = {
            "requirements": list(REQUIREMENTS),
            "base_python": sys.executable,
            "seconds": round(time.monotonic() - start, 1),
        }
        (tmp / MARKER).write_text(json.dumps(record) + "\n")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)  # a half-made one (no marker), already reported
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(quiet, f"tflite-runtime: environment ready in {time.monotonic() - start:.0f} s")


def ensure_python(quiet: bool = True) -> dict[str, Any]:
    """The Python that runs the worker, making the cached environment when needed.

    Returns ``{"python", "env", "created", "setup_seconds"}``; raises a one-line
    :class:`LenetEdgeError` that says what to do when the environment cannot be made.
    """
    start = time.monotonic()
    override = os.environ.get(PYTHON_ENV)
    if override:
        _check_python(override)
        return {"python": override, "env": None, "created": False, "setup_seconds": 0.0}
    target = env_dir()
    python = target / "bin" / "python"
    if (target / MARKER).is_file() and python.exists():
        return {"python": str(python), "env": str(target), "created": False, "setup_seconds": 0.0}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(target.parent / f".{ENV_NAME}.lock", "a+")  # noqa: SIM115 - held below
    except OSError as exc:
        raise LenetEdgeError(
            f"{WHY}, which cannot be created in {target} ({exc.strerror or exc}); point "
            f"XDG_CACHE_HOME at a writable directory, or {_by_hand(target)}"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another lenet-edge may be creating it
        created = False
        if not ((target / MARKER).is_file() and python.exists()):
            if target.exists():
                _say(
                    quiet,
                    f"tflite-runtime: {target} is incomplete (its creation was interrupted); "
                    "rebuilding it",
                )
            _remove_dead_temporaries(target.parent)
            try:
                _create(target, quiet)
            except LenetEdgeError as exc:
                raise LenetEdgeError(
                    f"{WHY} ({target}), which could not be created: {exc}; connect to PyPI "
                    f"(or set PIP_INDEX_URL to a reachable index) and retry, or {_by_hand(target)}"
                ) from None
            except OSError as exc:
                raise LenetEdgeError(
                    f"{WHY} ({target}), which could not be created ({exc}); {_by_hand(target)}"
                ) from None
            created = True
    return {
        "python": str(python),
        "env": str(target),
        "created": created,
        "setup_seconds": round(time.monotonic() - start, 2),
    }


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


class Worker:
    """One worker process with one model loaded (see the protocol in
    :mod:`lenet_edge.tflrt.worker`)."""

    def __init__(self, python: str, model_bytes: bytes, timeout: float = WORKER_TIMEOUT) -> None:
        self.timeout = timeout
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        start = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        try:
            self.proc = subprocess.Popen(
                [python, "-I", str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
            )
        except OSError as exc:
            self._stderr.close()
            raise LenetEdgeError(f"tflite-runtime worker cannot start ({exc})") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        try:
            self.hello = json.loads(self._expect(b"H", "starting"))
            info = json.loads(self.request(b"M", bytes(model_bytes), b"I", "loading the model"))
        except BaseException:
            self.close()
            raise
        self.start_seconds = round(time.monotonic() - start, 3)
        self.in_shape = tuple(info["input"]["shape"])
        self.in_dtype = np.dtype(info["input"]["dtype"])
        self.out_shape = tuple(info["output"]["shape"])
        self.out_dtype = np.dtype(info["output"]["dtype"])
        self.stats: dict[str, Any] = {}

    # -- frames ---------------------------------------------------------------------------

    def _died(self, doing: str) -> LenetEdgeError:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None and rc < 0:
            how = f"was killed by {signal.Signals(-rc).name}"
        else:
            how = f"exited (status {rc})"
        self._stderr.seek(0)
        last = [
            ln.strip()
            for ln in self._stderr.read().decode("utf-8", "replace").splitlines()
            if ln.strip() and not ln.startswith("INFO:")
        ]
        detail = f": {last[-1][:300]}" if last else ""
        hint = (
            "tflite-runtime 2.14 does not verify the flatbuffer, so a malformed model can crash "
            "it; check the model with `lenet-edge verify MODEL --backend litert`"
            if doing == "loading the model"
            else "run the command again"
        )
        return LenetEdgeError(f"the tflite-runtime worker {how} while {doing}{detail}; {hint}")

    def _wait(self, events: int, deadline: float, doing: str) -> None:
        fd = self._in if events == selectors.EVENT_WRITE else self._out
        with selectors.DefaultSelector() as sel:
            sel.register(fd, events)
            while not sel.select(max(min(deadline - time.monotonic(), 1.0), 0)):
                if time.monotonic() >= deadline:
                    self.close()
                    raise LenetEdgeError(
                        f"the tflite-runtime worker did not answer within {self.timeout:.0f} s "
                        f"while {doing}; it was stopped (LENET_EDGE_TFLITE_RUNTIME_TIMEOUT sets "
                        "the limit)"
                    )

    def _write(self, data: bytes, doing: str) -> None:
        deadline = time.monotonic() + self.timeout
        view = memoryview(data)
        while view:
            self._wait(selectors.EVENT_WRITE, deadline, doing)
            try:
                n = os.write(self._in, view[: 1 << 20])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise self._died(doing) from None
            view = view[n:]

    def _read(self, n: int, deadline: float, doing: str) -> bytes:
        chunks = []
        while n:
            self._wait(selectors.EVENT_READ, deadline, doing)
            b = os.read(self._out, min(n, 1 << 20))
            if not b:
                raise self._died(doing)
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def _expect(self, kind: bytes, doing: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        got, size = HEADER.unpack(self._read(HEADER.size, deadline, doing))
        payload = self._read(size, deadline, doing)
        if got == b"E":
            self.close()
            msg = payload.decode("utf-8", "replace")
            raise LenetEdgeError(f"tflite-runtime failed while {doing}: {msg}")
        if got != kind:
            self.close()
            raise LenetEdgeError(f"the tflite-runtime worker sent {got!r} while {doing}")
        return payload

    def request(self, kind: bytes, payload: bytes, reply: bytes, doing: str) -> bytes:
        """Send one frame and return the payload of the expected reply."""
        self._write(HEADER.pack(kind, len(payload)) + payload, doing)
        return self._expect(reply, doing)

    # -- running ----------------------------------------------------------------------------

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs ``[n, *out_shape[1:]]`` and per-image latencies (µs) for inputs ``x``."""
        x = np.ascontiguousarray(x, dtype=self.in_dtype).reshape((-1, *self.in_shape))
        n = len(x)
        raw = self.request(b"B", x.tobytes(), b"O", f"running {n} images")
        (got,) = struct.unpack_from("<I", raw)
        per = int(np.prod(self.out_shape)) * self.out_dtype.itemsize
        if got != n or len(raw) != 4 + n * per + 8 * n:
            self.close()
            raise LenetEdgeError(f"the tflite-runtime worker answered {got} of {n} images")
        outs = np.frombuffer(raw, self.out_dtype, n * int(np.prod(self.out_shape)), 4)
        lat = np.frombuffer(raw, "<f8", n, 4 + n * per)
        return outs.reshape((n, *self.out_shape[1:])).copy(), lat.astype(np.float64)

    def finish(self) -> dict[str, Any]:
        """Ask the worker for its figures (max RSS) and let it exit."""
        if self.proc.poll() is None and not self.stats:
            self.stats = json.loads(self.request(b"Q", b"", b"S", "finishing"))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.close()
        return self.stats

    def close(self) -> None:
        """Stop the worker (if running) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        with contextlib.suppress(OSError):
            self._stderr.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
