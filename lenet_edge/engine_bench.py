"""Host throughput of the exported standalone C engine, timed inside C.

``measure_engine(DIR)`` compiles ``DIR/standalone`` (an ``export-c`` output) with a small
timing harness, feeds it the 10,000 MNIST test images (quantized exactly as the engine's
``<prefix>_quantize_mnist`` does), times whole passes over the set with ``CLOCK_MONOTONIC``
inside the process, and checks every output byte against TFLM (the engine is bit-exact by
construction; a timing of wrong outputs is refused). The compiler is the host ``cc``/``gcc``
at ``-O2``, with ``-march=native`` by default: the engine's x86 SIMD path (AVX2, or AVX-512
where the CPU has it; chosen at compile time from the target's predefined macros) is then
used, exactly as an application built for this machine would get it. Plain ``-O2`` targets
the x86-64 baseline (SSE2), where the engine uses its portable C path.

Timings on a shared machine are noisy: other tenants only ever add time, so the harness
times chunks of consecutive images over several passes and keeps each chunk's fastest time;
compare ratios measured in one session. :mod:`lenet_edge.host_bench` (used by ``lenet-edge
bench`` and ``scripts/bench_host_engine.py``) measures LiteRT the same way in the same run, and
its Python loop's overhead on a trivial model, so that the two sides are compared on equal
footing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import firmware_export
from firmware_export.cflags import C_STD, C_STRICT
from firmware_export.mcu import Export, read_export
from lenet_edge.errors import LenetEdgeError

#: Default compiler flags: the issue asks for -O2; -march=native lets the engine's SIMD path
#: use what this CPU has (SSE4.1/AVX2), as an application built for it would.
DEFAULT_FLAGS = ("-O2", "-march=native")
#: Images per timed chunk (see measure_engine).
CHUNK = 250
#: The timing harness, a C file shipped with firmware_export.
HARNESS = Path(firmware_export.__file__).resolve().parent / "harness" / "host_bench.c"


def _export(export: Export | str | os.PathLike[str]) -> Export:
    return export if isinstance(export, Export) else read_export(export)


def compile_engine(
    export: Export | str | os.PathLike[str],
    binary: Path,
    flags: Sequence[str] = DEFAULT_FLAGS,
    cc: str | None = None,
) -> list[str]:
    """Build the timing harness against the standalone engine of ``export`` (an
    :class:`Export` or an export-c directory); return the command."""
    export = _export(export)
    prefix = export.prefix
    P = prefix.upper()
    sa = export.directory / "standalone"
    cc = cc or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LenetEdgeError("no C compiler (cc/gcc) on PATH; install gcc")
    # The library is built with the strict warnings the engine promises; the harness
    # (POSIX timing, stdio) with the same optimisation flags.
    objects = []
    for src in sorted(sa.glob("*.c")):
        obj = binary.parent / f"{src.stem}.o"
        _run([cc, *C_STRICT, *flags, "-I", str(sa), "-c", str(src), "-o", str(obj)])
        objects.append(str(obj))
    cmd = [
        cc,
        C_STD,
        *flags,
        "-I",
        str(sa),
        f'-DENGINE_HEADER="{prefix}.h"',
        f"-DENGINE_INPUT_SIZE={P}_INPUT_SIZE",
        f"-DENGINE_OUTPUT_SIZE={P}_OUTPUT_SIZE",
        f"-DENGINE_SCRATCH_SIZE={P}_SCRATCH_SIZE",
        f"-DENGINE_INFER={prefix}_infer",
        str(HARNESS),
        *objects,
        "-o",
        str(binary),
    ]
    _run(cmd)
    return cmd


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LenetEdgeError(f"{Path(cmd[0]).name} failed: {' '.join(detail[:3])}")
    return proc.stdout


def engine_inputs(export: Export | str | os.PathLike[str], images: np.ndarray) -> np.ndarray:
    """The int8 engine inputs of raw MNIST ``images`` (uint8 [N, 28, 28]) for ``export`` (an
    :class:`Export` or an export-c directory)."""
    from firmware_export.mnist import mnist_inputs

    inp = _export(export).meta["input"]
    x = mnist_inputs(images, tuple(inp["shape"]), inp["scale"], inp["zero_point"])
    return np.ascontiguousarray(x, dtype=np.int8).reshape(len(images), -1)


def measure_engine(
    export_dir: str | os.PathLike[str],
    *,
    images: np.ndarray | None = None,
    expected: np.ndarray | None = None,
    flags: Sequence[str] = DEFAULT_FLAGS,
    passes: int = 7,
    chunk: int = CHUNK,
    quiet: bool = True,
    workdir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Compile and time the standalone engine of an ``export-c`` output on ``images``
    (default: the 10,000 MNIST test images); check every output against ``expected``
    (default: TFLM's outputs).

    The harness makes ``passes`` passes over all the images, timing each chunk of ``chunk``
    consecutive images. ``us_per_image`` is the sum over the chunks of each chunk's fastest
    time, divided by the number of images: the time a pass takes when no other process
    interferes (other tenants of a shared machine only ever add time). The fastest and median
    whole passes are reported too. Also returned: ``ns_per_image``, ``images``, ``passes``,
    ``build`` (compiler flags), ``simd`` (the x86 path the flags select) and ``bit_exact``.
    """
    export = read_export(export_dir)
    meta = export.meta
    if images is None:
        from lenet_edge import data

        images = data.load().x_test
    x = engine_inputs(export, images)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp_name:
        tmp = Path(tmp_name)
        binary = tmp / "engine_bench"
        compile_engine(export, binary, flags)
        (tmp / "in.bin").write_bytes(x.tobytes())
        if not quiet:
            print(f"engine-bench: timing {len(x)} images x {passes} passes", flush=True)
        out = _run(
            [str(binary), str(tmp / "in.bin"), str(tmp / "out.bin"), str(passes), str(chunk)]
        )
        n, chunked, best, median = out.split()
        got = np.fromfile(tmp / "out.bin", dtype=np.int8).reshape(int(n), -1)
    if expected is None:
        from firmware_export.tflm import engine_reference_outputs

        if meta.get("model_interface", {}).get("input_dtype", "INT8") != "INT8":
            raise LenetEdgeError("give expected outputs for models with a float/uint8 interface")
        if not quiet:
            print("engine-bench: TFLM reference outputs", flush=True)
        model = export.model_path.read_bytes()
        expected = engine_reference_outputs(model, x.reshape(len(x), *meta["input"]["shape"][1:]))
    want = np.asarray(expected, dtype=np.int8).reshape(got.shape)
    bad = int((got != want).any(axis=1).sum())
    if bad:
        raise LenetEdgeError(f"the engine's outputs differ from the expected ones on {bad} images")
    return {
        "us_per_image": round(float(chunked) / 1000, 2),
        "ns_per_image": round(float(chunked), 1),
        "us_per_image_best_pass": round(float(best) / 1000, 2),
        "us_per_image_median_pass": round(float(median) / 1000, 2),
        "images": int(n),
        "passes": passes,
        "chunk": chunk,
        "build": " ".join(flags),
        "simd": simd_path(flags),
        "bit_exact": True,
        "timed": f"inside C (CLOCK_MONOTONIC): sum over chunks of {chunk} images of each "
        f"chunk's fastest of {passes} passes",
    }


def simd_path(flags: Sequence[str]) -> str:
    """Which of the engine's x86 paths the flags select (from the compiler's predefined
    macros, as the generated code's #if does): avx512, avx2 or portable."""
    cc = shutil.which("cc") or shutil.which("gcc") or "cc"
    try:
        macros = subprocess.run(
            [cc, *flags, "-dM", "-E", "-x", "c", "/dev/null"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return "unknown"
    defined = set(re.findall(r"#define (\w+)", macros))
    if {"__AVX2__", "__AVX512F__", "__AVX512BW__", "__AVX512VL__"} <= defined:
        return "avx512"
    if "__AVX2__" in defined:
        return "avx2"
    return "portable"


def measure_litert(
    model_bytes: bytes,
    inputs: np.ndarray,
    *,
    reference: bool = False,
    passes: int = 7,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """LiteRT's throughput on the same footing as :func:`measure_engine`: one thread, one
    image per call (``set_tensor``, ``invoke``, ``get_tensor``, as an application does), each
    chunk of ``chunk`` images timed over ``passes`` passes, the chunks' fastest times summed.
    ``inputs`` are what the model takes (int8 engine inputs for an int8 model)."""
    import time

    from lenet_edge.interpreters import LiteRTRunner

    runner = LiteRTRunner(model_bytes, reference=reference, num_threads=1)
    x = np.ascontiguousarray(inputs)
    n = len(x)
    chunks = [(k, min(k + chunk, n)) for k in range(0, n, chunk)]
    best = [float("inf")] * len(chunks)
    invoke = runner.invoke
    clock = time.perf_counter_ns
    for p in range(passes + 1):  # the first pass warms up
        for c, (lo, hi) in enumerate(chunks):
            t0 = clock()
            for i in range(lo, hi):
                invoke(x[i : i + 1])
            dt = clock() - t0
            if p > 0:
                best[c] = min(best[c], dt)
    ns = sum(best) / n
    return {
        "us_per_image": round(ns / 1000, 2),
        "ns_per_image": round(ns, 1),
        "images": n,
        "passes": passes,
        "chunk": chunk,
        "kernels": "reference" if reference else "default (XNNPACK delegate)",
        "threads": 1,
        "timed": f"Python loop of set_tensor/invoke/get_tensor: sum over chunks of {chunk} "
        f"images of each chunk's fastest of {passes} passes",
    }
