"""Run numbered fuzz cases in forked worker processes, with a time limit per case.

A case is a number; ``target(i)`` regenerates its input deterministically and returns an
outcome label. The parent records, per case, the label, or a bug:

* ``exception``: the target raised (anything but the expected refusal, which the target
  turns into a label itself), with the exception type, where it was raised and the message;
* ``crash``: the worker died (a signal such as SIGSEGV/SIGABRT, or an abnormal exit);
* ``hang``: a case ran longer than the time limit; the worker is killed and replaced.

Workers are forked (no re-import), get a memory limit (4 GiB beyond what they map at start)
so that a runaway allocation becomes a ``MemoryError`` (an exception, so a bug) instead of the
kernel's OOM killer, and take the case numbers ``i`` with ``i % workers == w``.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

Target = Callable[[int], str]

#: Address space a worker may add to what it maps when it starts (bytes).
MEMORY_LIMIT = 4 << 30


def _mapped_bytes() -> int:
    """This process's current address-space size (VmSize), 0 where /proc is unavailable."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _limit_memory() -> None:
    """Cap the address space at what is mapped now plus :data:`MEMORY_LIMIT` (a forked
    worker inherits its parent's mappings, TensorFlow's included), within the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _mapped_bytes() + MEMORY_LIMIT
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


@dataclass
class Bug:
    case: int
    kind: str  # exception | crash | hang
    summary: str  # e.g. "ZeroDivisionError at plan.py:260"
    detail: str  # message / traceback tail / signal


@dataclass
class Campaign:
    cases: int
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    bugs: list[Bug] = field(default_factory=list)
    wall_seconds: float = 0.0
    workers: int = 1

    @property
    def bug_summary(self) -> dict[str, int]:
        return dict(collections.Counter(f"{b.kind}: {b.summary}" for b in self.bugs))

    def as_dict(self) -> dict[str, Any]:
        done = sum(self.outcomes.values()) + len(self.bugs)
        return {
            "cases": done,
            "workers": self.workers,
            "wall_seconds": round(self.wall_seconds, 1),
            "cases_per_second": round(done / self.wall_seconds, 1) if self.wall_seconds else None,
            "outcomes": dict(self.outcomes.most_common()),
            "bugs": len(self.bugs),
            "bug_kinds": self.bug_summary,
            "bug_cases": [b.__dict__ for b in self.bugs[:50]],
        }


def _worker(target: Target, indices: range, conn: Connection, current: Any) -> None:
    _limit_memory()
    for i in indices:
        current[0] = i
        current[1] = time.monotonic()
        try:
            conn.send(("ok", i, target(i), ""))
        except Exception as exc:  # the target's bugs, reported to the parent
            frames = traceback.extract_tb(exc.__traceback__)
            last = frames[-1] if frames else None
            where = f"{os.path.basename(last.filename)}:{last.lineno}" if last else "?"
            tail = "".join(traceback.format_exception(exc, limit=-6))[-1500:]
            conn.send(("bug", i, f"{type(exc).__name__} at {where}", tail))
    current[1] = 0.0
    conn.send(("done", -1, "", ""))
    conn.close()


def run_campaign(
    target: Target,
    cases: int,
    workers: int = 1,
    timeout: float = 30.0,
    on_bug: Callable[[Bug], None] | None = None,
    progress: Callable[[int], None] | None = None,
    start: int = 0,
) -> Campaign:
    """Run cases ``start .. start + cases - 1`` of ``target``; see the module docstring."""
    ctx = mp.get_context("fork")
    camp = Campaign(cases=cases, workers=workers)
    t0 = time.monotonic()
    end = start + cases

    class Slot:
        def __init__(self, w: int, first: int) -> None:
            self.w = w
            self.current = ctx.Array("d", [float(first), 0.0], lock=False)
            self.recv, send = ctx.Pipe(duplex=False)
            self.proc = ctx.Process(
                target=_worker,
                args=(target, range(first, end, workers), send, self.current),
                daemon=True,
            )
            self.proc.start()
            send.close()
            self.finished = False

    def record(b: Bug) -> None:
        camp.bugs.append(b)
        if on_bug is not None:
            on_bug(b)

    slots = [Slot(w, start + w) for w in range(min(workers, cases))]
    done = 0

    def drain(s: Slot) -> None:
        nonlocal done
        try:
            while not s.finished and s.recv.poll():
                kind, i, a, b = s.recv.recv()
                if kind == "done":
                    s.finished = True
                    s.proc.join()
                    return
                done += 1
                if kind == "ok":
                    camp.outcomes[a] += 1
                else:
                    record(Bug(i, "exception", a, b))
                if progress is not None:
                    progress(done)
        except (EOFError, OSError):
            pass

    while any(not s.finished for s in slots):
        live = [s for s in slots if not s.finished]
        wait([s.recv for s in live], timeout=0.5)
        for s in live:
            drain(s)
            if s.finished:
                continue
            i = int(s.current[0])
            started = s.current[1]
            died = not s.proc.is_alive()
            hung = started > 0 and time.monotonic() - started > timeout
            if not (died or hung):
                continue
            if died:
                drain(s)  # whatever it sent before dying
                if s.finished:
                    continue
                code = s.proc.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
                record(Bug(i, "crash", f"worker died ({how})", how))
            else:
                s.proc.kill()
                s.proc.join()
                drain(s)
                record(Bug(i, "hang", f"no result after {timeout:g}s", ""))
            done += 1
            s.recv.close()
            nxt = i + workers
            if nxt < end:
                slots[slots.index(s)] = Slot(s.w, nxt)
            else:
                s.finished = True
    camp.wall_seconds = time.monotonic() - t0
    return camp
