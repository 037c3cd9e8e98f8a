"""Fuzzing the exported C engine under ASan + UBSan: the short run of the default suite.

The long run (the 10,000 test images, 100,000 generated inputs, the extremes) is ``python
scripts/fuzz_engine.py`` (``make fuzz-engine``). Both build the engine with
``-fsanitize=address,undefined -fno-sanitize-recover=all`` and tests/c/fuzz_engine.c, check
the public API with NULL pointers and misaligned scratch, and compare outputs with TFLM.
The last tests break an engine on purpose to show that each check can fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_export.export import export_model, write_export
from firmware_export.mnist import mnist_inputs
from lenet_edge.fuzz.engine import EngineFuzzError, build, extremes, fuzz, run_api, run_files
from tests.support.export_helpers import requires

pytestmark = requires("gcc")


@pytest.fixture(scope="module")
def seed_export(int8_model: Any, mnist: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    model = Path(int8_model()).read_bytes()
    result = export_model(model, n_vectors=1)
    out = tmp_path_factory.mktemp("fuzz-engine") / "export"
    write_export(result, out)
    p = result.plan.input
    real = mnist_inputs(mnist.x_test[:500], p.shape, p.scale, p.zero_point)
    return model, out / "standalone", real


def test_short_fuzz_of_the_seed_engine(seed_export: Any, tmp_path: Path) -> None:
    model, standalone, real = seed_export
    figures = fuzz(
        model, standalone, tmp_path, real_inputs=real, n_random=3000, sample_every=10, seed=7
    )
    assert figures.runs["api"]["result"].startswith("api ok: ")
    assert figures.runs["extremes"]["inputs"] >= 16
    assert figures.runs["random"]["compared_with_tflm"] == 300
    assert figures.mismatches == {"extremes": 0, "real images": 0, "random": 0}, figures.runs


def test_extremes_are_what_they_say() -> None:
    ext = extremes((32, 32, 1))
    assert (ext["all -128"] == -128).all() and (ext["all 127"] == 127).all()
    board = ext["checkerboard"][:, :, 0]
    assert board[0, 0] == 127 and board[0, 1] == -128 and board[1, 0] == -128
    assert (ext["checkerboard, other phase"] == -ext["checkerboard"] - 1).all()


# ----------------------------------------------------------------------------- can fail


def _broken_copy(standalone: Path, tmp: Path, edit: Any) -> Path:
    d = tmp / "standalone"
    shutil.copytree(standalone, d)
    edit(d)
    return d


def _change_a_bias(d: Path) -> None:
    path = d / "lenet_weights.c"
    text = path.read_text()
    m = re.search(r"_bias\[\d+\] = \{\s*(-?\d+)", text)
    assert m is not None, "no bias array found in lenet_weights.c"
    path.write_text(text[: m.start(1)] + str(int(m.group(1)) + 100000) + text[m.end(1) :])


def _edit_c(d: Path, name: str, old: str, new: str) -> None:
    path = d / name
    text = path.read_text()
    assert old in text, f"{old!r} not found in {name}"
    path.write_text(text.replace(old, new, 1))


def _wrong_status(d: Path) -> None:
    _edit_c(
        d,
        "lenet_model.c",
        "return LENET_ERROR_NULL_POINTER;",
        "return LENET_ERROR_BAD_PARAMS;",
    )


def _drop_a_null_check(d: Path) -> None:
    _edit_c(d, "lenet_quantize.c", "if (pixels == NULL || input == NULL)", "if (0)")


def _shrink_the_scratch(d: Path) -> None:
    path = d / "lenet.h"
    text = path.read_text()
    m = re.search(r"#define LENET_SCRATCH_SIZE (\d+)", text)
    assert m is not None
    path.write_text(text.replace(m.group(0), f"#define LENET_SCRATCH_SIZE {int(m.group(1)) // 2}"))


def test_a_wrong_engine_is_caught(seed_export: Any, tmp_path: Path) -> None:
    model, standalone, real = seed_export
    broken = _broken_copy(standalone, tmp_path, _change_a_bias)
    figures = fuzz(
        model, broken, tmp_path, real_inputs=real[:50], n_random=200, sample_every=10, seed=7
    )
    assert figures.mismatches["real images"] > 0 and figures.mismatches["random"] > 0
    assert not figures.ok


@pytest.mark.parametrize(
    ("edit", "finding"),
    [
        (
            _wrong_status,
            r"api check failed: lenet_infer\(in, out, scr\) == LENET_ERROR_NULL_POINTER",
        ),
        (_drop_a_null_check, r"runtime error: load of null pointer"),
    ],
    ids=["wrong status for NULL", "NULL dereferenced"],
)
def test_a_bad_api_is_caught(seed_export: Any, tmp_path: Path, edit: Any, finding: str) -> None:
    broken = _broken_copy(seed_export[1], tmp_path, edit)
    binary = build(broken, tmp_path / "fuzz_engine")
    with pytest.raises(EngineFuzzError, match=finding):
        run_api(binary)


def test_an_overrun_is_caught_by_the_sanitizer(seed_export: Any, tmp_path: Path) -> None:
    broken = _broken_copy(seed_export[1], tmp_path, _shrink_the_scratch)
    binary = build(broken, tmp_path / "fuzz_engine")
    x = np.zeros((1, 32, 32, 1), np.int8)
    with pytest.raises(EngineFuzzError, match="AddressSanitizer: heap-buffer-overflow"):
        run_files(binary, x, tmp_path, "overrun")


@pytest.mark.parametrize("script", ["fuzz_engine.py", "fuzz_reader.py"])
def test_fuzz_scripts_never_overwrite_their_model(script: str, tmp_path: Path) -> None:
    """The fuzz scripts' figures (--out, and fuzz_reader's --write) are checked before the
    run: naming the model under test is one line, exit 2, and the model stays as it was."""
    path = Path(__file__).resolve().parents[2] / "scripts" / script
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3 not really a model")
    argvs = [["--model", str(model), "--out", str(model)]]
    if script == "fuzz_reader.py":
        out = str(tmp_path / "r.json")
        argvs.append(["--model", str(model), "--out", out, "--replay", "1", "--write", str(model)])
    for argv in argvs:
        proc = subprocess.run(
            [sys.executable, str(path), *argv], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "overwrite" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert model.read_bytes() == b"TFL3 not really a model"
    assert not (tmp_path / "r.json").exists()
