"""Atomic outputs: `export-c` and `train` killed partway (SIGKILL and SIGINT) leave only complete
artifacts.

Two ways of choosing "partway":

* during the work, synchronised on the command's own progress lines (TFLM reference outputs
  for export-c, the "best, saved" epoch line for train);
* at the most delicate instants of an atomic write, deterministically: with
  ``LENET_EDGE_FAULT_STOP=<point>`` the process stops itself (SIGSTOP) there (see
  ``lenet_edge.fsutil``); the test then sends SIGKILL, or SIGINT followed by SIGCONT.

The rule checked: each output path holds either the previous complete output, byte for byte,
or the new complete one (an export's files all match the SHA-256 listed in its export.json; a
model.keras loads). SIGINT removes every temporary. SIGKILL cannot run any cleanup, so it may
leave one ``.<name>.<pid>.<random>.tmp`` sibling; the final path is intact, and the next write
of the same output removes the stale sibling.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lenet_edge.fsutil import FAULT_ENV, atomic_path, atomic_write_bytes, remove_stale_temps

DEADLINE = 600.0  # seconds; a safety net against a stuck test, never a timing assertion


def tree(root: Path, with_temps: bool = True) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden ones too, unless ``with_temps`` is False);
    digests rather than bytes keep a failure's diff short and readable."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (with_temps or not p.name.startswith("."))
    }


def temps(parent: Path, name: str) -> list[str]:
    """Siblings of ``parent / name`` that look like its temporaries."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def assert_complete_export(d: Path) -> dict[str, Any]:
    report = json.loads((d / "export.json").read_text())
    files = tree(d)
    assert sorted(files) == sorted([*report["files"], "export.json"])
    for rel, digest in report["files"].items():
        assert files[rel] == digest, rel
    return dict(report)


def _sigint_default() -> None:
    """In the child: SIGINT back to its default action. A shell starting a job in the
    background (``cmd &``) sets SIGINT to "ignore", which Python then keeps; the tests send
    SIGINT as a user's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """A ``lenet-edge`` subprocess with stderr in a file (to wait for its progress lines)."""

    def __init__(self, argv: list[str], log: Path, fault: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, "LENET_EDGE_DEBUG")}
        if fault:
            env[FAULT_ENV] = fault
        self.log = log
        self._err = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lenet_edge", *argv],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env=env,
            preexec_fn=_sigint_default,
        )

    def stderr(self) -> str:
        return self.log.read_text()

    def wait_for(self, cond: Callable[[], bool], what: str) -> None:
        end = time.monotonic() + DEADLINE
        while not cond():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before {what}:\n{self.stderr()[-2000:]}"
                )
            if time.monotonic() > end:
                self.proc.kill()
                raise AssertionError(f"never reached {what}")
            time.sleep(0.02)

    def wait_for_text(self, text: str) -> None:
        self.wait_for(lambda: text in self.stderr(), repr(text))

    def wait_stopped(self) -> None:
        """Wait until the process has stopped itself at its fault point (state T)."""

        def stopped() -> bool:
            try:
                stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
            except OSError:
                return False
            return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")

        self.wait_for(stopped, "the fault point")

    def interrupt(self) -> None:
        """SIGINT, then SIGCONT in case it is stopped: the signal is handled on resuming."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.send_signal(signal.SIGCONT)

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=DEADLINE)
        finally:
            self._err.close()
        return code


# ----------------------------------------------------------------------------- export-c


@pytest.fixture(scope="module")
def seed_tflite(int8_model: Any) -> Path:
    return Path(int8_model())


@pytest.fixture
def previous_export(seed_tflite: Path, tmp_path: Path) -> Path:
    """A complete earlier export at the output path (3 test vectors, prefix 'old')."""
    out = tmp_path / "c"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenet_edge",
            "export-c",
            str(seed_tflite),
            "--out",
            str(out),
            "--test-vectors",
            "3",
            "--prefix",
            "old",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert_complete_export(out)
    return out


def _export(model: Path, out: Path, vectors: int, quiet: bool = True) -> list[str]:
    argv = ["export-c", str(model), "--out", str(out), "--test-vectors", str(vectors)]
    return argv + (["-q"] if quiet else [])


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_export_c_killed_while_computing(
    sig: str, seed_tflite: Path, previous_export: Path, tmp_path: Path
) -> None:
    before = tree(previous_export)
    run = Run(_export(seed_tflite, previous_export, 4000, quiet=False), tmp_path / "err")
    run.wait_for_text("TFLM reference outputs: ")  # a quarter of the vectors computed
    if sig == "SIGKILL":
        run.proc.kill()
    else:
        run.interrupt()
    code = run.finish()
    assert tree(previous_export) == before
    assert temps(previous_export.parent, "c") == []
    if sig == "SIGKILL":
        assert code == -signal.SIGKILL
    else:
        assert code == 130
        lines = run.stderr().strip().splitlines()
        assert "Traceback" not in run.stderr()
        assert lines[-1] == (
            "error: interrupted; outputs written so far are complete, nothing partial was left"
        )


@pytest.mark.parametrize("point", ["atomic_dir:written", "atomic_dir:swapped"])
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_export_c_killed_while_writing(
    sig: str, point: str, seed_tflite: Path, previous_export: Path, tmp_path: Path
) -> None:
    before = tree(previous_export)
    run = Run(_export(seed_tflite, previous_export, 5), tmp_path / "err", fault=point)
    run.wait_stopped()
    if sig == "SIGKILL":
        run.proc.kill()
    else:
        run.interrupt()
    code = run.finish()
    after = tree(previous_export)
    report = assert_complete_export(previous_export)
    if point == "atomic_dir:written":
        assert after == before  # the new tree was complete but never swapped in
    else:
        assert report["prefix"] == "lenet" and report["test_vectors"]["count"] == 5
    left = temps(previous_export.parent, "c")
    if sig == "SIGINT":
        assert code == 130
        assert run.stderr().strip().splitlines()[-1].startswith("error: interrupted; ")
        assert left == []
    else:
        assert code == -signal.SIGKILL
        # SIGKILL runs no cleanup: one stale temporary tree of that (dead) process.
        assert left and all(n.startswith(f".c.{run.proc.pid}.") for n in left), left
        # The next export removes it and completes.
        again = subprocess.run(
            [sys.executable, "-m", "lenet_edge", *_export(seed_tflite, previous_export, 2)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert temps(previous_export.parent, "c") == []
        assert assert_complete_export(previous_export)["test_vectors"]["count"] == 2


# ----------------------------------------------------------------------------- train


def _train(out: Path, quiet: bool = False) -> list[str]:
    argv = ["train", "--out", str(out), "--limit", "1000", "--batch-size", "100"]
    argv += ["--epochs", "40", "--no-augment"]
    return argv + (["-q"] if quiet else [])


def test_train_interrupted_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    from lenet_edge.model import load_keras_model

    out = tmp_path / "run"
    run = Run(_train(out), tmp_path / "err")
    run.wait_for_text("best, saved")
    run.interrupt()
    code = run.finish()
    err = run.stderr()
    assert code == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: best checkpoint so far (epoch ")
    assert last.endswith(f"is in {out / 'model.keras'}")
    record = json.loads((out / "train.json").read_text())
    assert record["interrupted"] is True and record["test_accuracy"] is None
    assert f"(epoch {record['best_epoch']}," in last
    assert record["model_sha256"] == hashlib.sha256((out / "model.keras").read_bytes()).hexdigest()
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "model.keras",
        "train.json",
        "training_curves.png",
    ]
    model = load_keras_model(str(out / "model.keras"))  # usable
    assert tuple(model.outputs[0].shape[1:]) == (10,)


def test_train_killed_while_saving_keeps_the_earlier_run(
    trained_model: Any, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(trained_model(), out)
    before = tree(out)
    run = Run(_train(out, quiet=True), tmp_path / "err", fault="atomic_path:written")
    run.wait_stopped()  # the first checkpoint is complete in its temporary file
    run.proc.kill()
    assert run.finish() == -signal.SIGKILL
    assert tree(out, with_temps=False) == before  # every earlier artifact, byte for byte
    stale = temps(out, "model.keras")
    assert len(stale) == 1 and stale[0].startswith(f".model.keras.{run.proc.pid}."), stale
    # The next write of model.keras removes the stale temporary, whatever becomes of it.
    with pytest.raises(RuntimeError), atomic_path(out / "model.keras"):
        raise RuntimeError("abandon this write")
    assert temps(out, "model.keras") == []
    assert tree(out) == before


# ----------------------------------------------------------------------------- fsutil


def test_stale_temporaries_of_live_processes_and_other_files_are_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        f".out.json.{dead.pid}.abc123.tmp": "stale",
        f".out.json.{os.getppid()}.abc123.tmp": "a live process",
        f".out.json.{dead.pid}.backup": "not a temporary",
        f".other.json.{dead.pid}.abc123.tmp": "another output's",
    }
    for name in names:
        (tmp_path / name).write_text(name)
    atomic_write_bytes(tmp_path / "out.json", b"{}\n")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([n for n, why in names.items() if why != "stale"] + ["out.json"])
    assert remove_stale_temps(tmp_path / "other.json") == [
        tmp_path / f".other.json.{dead.pid}.abc123.tmp"
    ]


def test_interrupt_during_commit_is_held_until_cleanup_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT that lands while the new tree is swapped in and the previous one removed is
    delivered only afterwards: no half-removed temporary, and the interrupt is not lost."""
    out = tmp_path / "c"
    out.mkdir()
    for i in range(200):
        (out / f"old{i}.txt").write_text("old")
    # Python's Ctrl-C handler, also when this process inherited SIGINT ignored (``cmd &``).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupted_commit(out, tmp_path, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_commit(out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lenet_edge.fsutil import atomic_dir, signals_deferred

    original = shutil.rmtree
    finished: list[Path] = []

    def rmtree_interrupted(path: Path, *args: Any, **kwargs: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # the interrupt lands inside the commit section
        original(path, *args, **kwargs)
        finished.append(path)

    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
        monkeypatch.setattr(shutil, "rmtree", rmtree_interrupted)
    monkeypatch.undo()
    assert finished, "the previous tree's removal ran to completion"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    # After the block, SIGINT behaves as before.
    with signals_deferred():
        pass
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
