"""Fuzz the generated C engine under AddressSanitizer and UBSan, against TFLM.

Used by ``tests/fuzz/test_fuzz_engine.py`` (short) and ``scripts/fuzz_engine.py`` (long).
The harness is ``fuzz_engine.c`` beside this module: it generates seeded random inputs itself (eight
families, from uniform noise to MNIST-like strokes and checkers), checks on every input what
Python cannot see (status, untouched input, predict == argmax, no dependence on the prior
scratch contents) and writes every output plus a sample of the inputs, which are compared
here with the TFLM interpreter, the golden reference. The binary is built with
``-fsanitize=address,undefined -fno-sanitize-recover=all``: any finding aborts the run.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.hostbuild import SANITIZE, HostBuildError, compile_harness

HARNESS = Path(__file__).resolve().parent / "fuzz_engine.c"


class EngineFuzzError(AssertionError):
    """The harness failed: a sanitizer finding, a failed check or a crash."""


def build(standalone: Path, binary: Path, flags: list[str] | None = None) -> Path:
    """Compile the engine in ``standalone`` (prefix ``lenet``) with the fuzz harness."""
    try:
        return compile_harness(
            standalone, binary, list(SANITIZE if flags is None else flags), harness=HARNESS
        )
    except HostBuildError as exc:
        raise EngineFuzzError(str(exc)) from None


def _run(args: list[str], timeout: float = 3600) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise EngineFuzzError(
            f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-500:]}{proc.stderr[-4000:]}"
        )
    return proc.stdout


def run_api(binary: Path) -> str:
    """NULL pointers and misaligned scratch in every public function (see the harness)."""
    return _run([str(binary), "api"]).strip()


def run_files(binary: Path, inputs: np.ndarray, workdir: Path, name: str) -> np.ndarray:
    """Run int8 ``inputs`` [N, ...]; return the engine's outputs [N, output_size]."""
    src, dst = workdir / f"{name}.in", workdir / f"{name}.out"
    np.ascontiguousarray(inputs, dtype=np.int8).tofile(src)
    _run([str(binary), "files", str(src), str(dst)])
    return np.fromfile(dst, dtype=np.int8).reshape(len(inputs), -1)


def run_random(
    binary: Path, seed: int, n: int, every: int, input_shape: tuple[int, ...], workdir: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``n`` generated inputs; return (all outputs, sampled case numbers, their inputs)."""
    dst, sample = workdir / f"random-{seed}.out", workdir / f"random-{seed}.sample"
    _run([str(binary), "random", str(seed), str(n), str(dst), str(every), str(sample)])
    outputs = np.fromfile(dst, dtype=np.int8).reshape(n, -1)
    cases = np.arange(0, n, every)
    inputs = np.fromfile(sample, dtype=np.int8).reshape(len(cases), *input_shape)
    return outputs, cases, inputs


def extremes(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Named extreme inputs of one image shape (H, W, C)."""
    h, w, c = shape
    y, x = np.indices((h, w))
    lo, hi = np.int8(-128), np.int8(127)

    def img(mask: np.ndarray) -> np.ndarray:
        return np.repeat(np.where(mask, hi, lo)[:, :, None], c, axis=2).astype(np.int8)

    out = {
        "all -128": np.full(shape, lo, np.int8),
        "all 127": np.full(shape, hi, np.int8),
        "all 0": np.zeros(shape, np.int8),
        "all -1": np.full(shape, -1, np.int8),
        "checkerboard": img((x + y) % 2 == 0),
        "checkerboard, other phase": img((x + y) % 2 == 1),
        "checkerboard 2x2": img((x // 2 + y // 2) % 2 == 0),
        "checkerboard 4x4": img((x // 4 + y // 4) % 2 == 0),
        "row stripes": img(y % 2 == 0),
        "column stripes": img(x % 2 == 0),
        "left half 127": img(x < w // 2),
        "top half 127": img(y < h // 2),
        "border 127": img((x == 0) | (y == 0) | (x == w - 1) | (y == h - 1)),
        "one pixel 127 (top left)": img((x == 0) & (y == 0)),
        "one pixel 127 (bottom right)": img((x == w - 1) & (y == h - 1)),
        "one pixel -128 in 127": img(~((x == w // 2) & (y == h // 2))),
    }
    return out


def tflm_outputs(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """TFLM's int8 outputs [N, output_size] for int8 ``inputs``: the one function for the
    expected outputs (:func:`firmware_export.tflm.engine_reference_outputs`)."""
    from firmware_export.tflm import engine_reference_outputs

    return engine_reference_outputs(model_bytes, inputs).astype(np.int8)


@dataclass
class Figures:
    """What one fuzz run did and found."""

    runs: dict[str, Any] = field(default_factory=dict)
    mismatches: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.mismatches.values())


def compare(
    figures: Figures, name: str, got: np.ndarray, want: np.ndarray, labels: list[str]
) -> None:
    """Record how many of ``got`` differ from TFLM's ``want`` (and which, by label)."""
    bad = np.flatnonzero(np.any(got != want, axis=1))
    figures.mismatches[name] = len(bad)
    if len(bad):
        figures.runs[name]["mismatched"] = [labels[i] for i in bad[:20]]
        figures.runs[name]["max_lsb"] = int(
            np.abs(got.astype(np.int16) - want.astype(np.int16)).max()
        )


def fuzz(
    model_bytes: bytes,
    standalone: Path,
    workdir: Path,
    *,
    real_inputs: np.ndarray | None,
    n_random: int,
    sample_every: int,
    seed: int = 1,
) -> Figures:
    """Build the sanitized engine and run every part; raise :class:`EngineFuzzError` on a
    sanitizer finding or failed harness check; count output mismatches with TFLM."""
    figures = Figures()
    binary = build(standalone, workdir / "fuzz_engine")
    t = time.monotonic()
    figures.runs["api"] = {"result": run_api(binary)}
    shape = tuple(int(d) for d in np.asarray(model_input_shape(model_bytes)))
    ext = extremes(shape)
    got = run_files(binary, np.stack(list(ext.values())), workdir, "extremes")
    figures.runs["extremes"] = {"inputs": len(ext), "names": list(ext)}
    compare(
        figures, "extremes", got, tflm_outputs(model_bytes, np.stack(list(ext.values()))), [*ext]
    )
    if real_inputs is not None:
        t1 = time.monotonic()
        got = run_files(binary, real_inputs, workdir, "real")
        figures.runs["real images"] = {
            "inputs": len(real_inputs),
            "engine_seconds": round(time.monotonic() - t1, 1),
        }
        want = tflm_outputs(model_bytes, real_inputs)
        compare(figures, "real images", got, want, [f"image {i}" for i in range(len(got))])
    if n_random:
        t1 = time.monotonic()
        outputs, cases, sample = run_random(binary, seed, n_random, sample_every, shape, workdir)
        figures.runs["random"] = {
            "inputs": n_random,
            "seed": seed,
            "families": 8,
            "engine_seconds": round(time.monotonic() - t1, 1),
            "compared_with_tflm": len(cases),
        }
        want = tflm_outputs(model_bytes, sample)
        compare(
            figures, "random", outputs[cases], want, [f"random case {i}" for i in cases.tolist()]
        )
    figures.runs["wall_seconds"] = round(time.monotonic() - t, 1)
    return figures


def model_input_shape(model_bytes: bytes) -> tuple[int, ...]:
    """(H, W, C) of the model's int8 input."""
    from firmware_export.reader import load_graph

    g = load_graph(model_bytes)
    return tuple(g.tensors[g.inputs[0]].shape[1:])
