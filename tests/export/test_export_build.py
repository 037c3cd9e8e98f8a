"""export-c: the generated C builds cleanly everywhere, names carry the prefix, output is
deterministic, and the command line behaves."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware_export.cflags import CXX_STRICT
from firmware_export.csyntax import C_KEYWORDS, CXX_KEYWORDS, reserved_reason
from firmware_export.export import export_model, write_export
from lenet_edge.cli import main
from tests.support import C_DIR
from tests.support.export_helpers import STRICT, requires

STUB = C_DIR / "tflm_stub"


def _export(model: Path, out: Path, mnist: Any, prefix: str = "lenet", n: int = 5) -> Path:
    result = export_model(
        model.read_bytes(),
        model_name=model.name,
        prefix=prefix,
        n_vectors=n,
        images=mnist.x_test,
        labels=mnist.y_test,
    )
    return write_export(result, out)


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory: pytest.TempPathFactory, int8_model: Any, mnist: Any) -> Path:
    return _export(int8_model(), tmp_path_factory.mktemp("build") / "out", mnist)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory, int8_model: Any, mnist: Any) -> Path:
    """The relu variant exported with another prefix."""
    return _export(
        int8_model(activation="relu"),
        tmp_path_factory.mktemp("digits") / "out",
        mnist,
        prefix="digits",
    )


def _c_files(d: Path) -> list[Path]:
    return sorted(
        [*(d / "standalone").glob("*.c"), *(d / "test").glob("*.c"), *(d / "tflm").glob("*.c")]
    )


def _compile(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"


#: Optimization and target flags the generated code must build with, without a warning:
#: the portable path, the x86 AVX2 path, whatever this CPU selects (AVX-512 here), and the
#: same unoptimized (where GCC's intrinsics are macros).
TARGETS = [["-O2"], ["-O2", "-mavx2", "-mfma"], ["-O2", "-march=native"], ["-O0", "-march=native"]]


@requires("gcc")
@pytest.mark.parametrize("target", TARGETS, ids=" ".join)
def test_c99_strict_warnings(seed_dir: Path, tmp_path: Path, target: list[str]) -> None:
    for src in _c_files(seed_dir):
        _compile(
            [
                "gcc",
                *STRICT,
                *target,
                "-I",
                str(seed_dir / "standalone"),
                "-I",
                str(seed_dir / "test"),
                "-c",
                str(src),
                "-o",
                str(tmp_path / "x.o"),
            ]
        )


@requires("g++")
@pytest.mark.parametrize("target", TARGETS, ids=" ".join)
def test_compiles_as_cxx(seed_dir: Path, tmp_path: Path, target: list[str]) -> None:
    for src in _c_files(seed_dir):
        _compile(
            [
                "g++",
                "-x",
                "c++",
                *CXX_STRICT,
                *target,
                "-I",
                str(seed_dir / "standalone"),
                "-I",
                str(seed_dir / "test"),
                "-c",
                str(src),
                "-o",
                str(tmp_path / "x.o"),
            ]
        )


@requires("arm-none-eabi-gcc", "arm-none-eabi-nm")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m33", "cortex-m3", "cortex-m0"])
def test_cortex_m_build_is_integer_only(seed_dir: Path, tmp_path: Path, cpu: str) -> None:
    """The library builds for Cortex-M with the strict flags, and its objects need nothing
    from a runtime but memcpy/memset (plus libgcc's integer multiply/divide helpers on
    ARMv6-M, which lacks those instructions): no float emulation, no malloc, no 64-bit
    division."""
    undefined: set[str] = set()
    defined: set[str] = set()
    for src in sorted((seed_dir / "standalone").glob("*.c")):
        obj = tmp_path / (src.stem + ".o")
        _compile(
            [
                "arm-none-eabi-gcc",
                *STRICT,
                "-O2",
                f"-mcpu={cpu}",
                "-mthumb",
                "-I",
                str(seed_dir / "standalone"),
                "-c",
                str(src),
                "-o",
                str(obj),
            ]
        )
        nm = subprocess.run(
            ["arm-none-eabi-nm", "-u", str(obj)], capture_output=True, text=True, check=True
        ).stdout.split()
        undefined.update(w for w in nm if w != "U")
        symbols = subprocess.run(
            ["arm-none-eabi-nm", "--defined-only", str(obj)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if src.name == "lenet_host_simd.c":
            # The x86 code: a firmware build compiles it to nothing (and needs none of it).
            assert not [w for w in symbols if w.startswith("lenet_")], symbols
        else:
            defined.update(symbols)
    # Every engine symbol the firmware objects use is defined without lenet_host_simd.c.
    assert {s for s in undefined if s.startswith("lenet_")} <= defined
    foreign = {s for s in undefined if not s.startswith("lenet_")}
    allowed = {"memcpy", "memset"}
    if cpu == "cortex-m0":
        allowed |= {s for s in foreign if re.fullmatch(r"__aeabi_(u?idiv(mod)?|lmul)", s)}
    assert foreign <= allowed, f"unexpected runtime dependencies: {sorted(foreign - allowed)}"
    assert not any(re.match(r"__aeabi_([fd]|.*ldiv)", s) for s in foreign)


def test_kernels_layers_and_host_simd_are_apart(seed_dir: Path) -> None:
    """Kernels are kernels (no model data, no layer of this model), the per-layer code is in
    lenet_layers.c, x86 intrinsics only in lenet_host_simd.c, and every ignored warning is
    pushed and popped."""
    sa = seed_dir / "standalone"
    x86 = re.compile(r"\b(_mm\d*_\w+|__m\d+i?|__mmask\d+)\b")
    layer = re.compile(r"\blenet_(conv|fc|pool|lut|softmax)\d+")
    kernels = sorted(sa.glob("lenet_*_s8.c"))
    assert kernels
    for p in kernels:
        text = re.sub(r"/\*.*?\*/|//[^\n]*", "", p.read_text(), flags=re.S)
        assert '#include "lenet_weights.h"' not in text, p.name
        assert not layer.search(text), (p.name, layer.search(text))
        assert not x86.search(text), (p.name, x86.search(text))
    layers = re.sub(r"/\*.*?\*/|//[^\n]*", "", (sa / "lenet_layers.c").read_text(), flags=re.S)
    assert "lenet_conv0_tile(" in layers and not x86.search(layers)
    assert x86.search((sa / "lenet_host_simd.c").read_text())
    for p in sorted(sa.glob("*")):
        if p.name == "lenet_host_simd.c":
            continue
        text = re.sub(r"/\*.*?\*/|//[^\n]*", "", p.read_text(), flags=re.S)
        assert not x86.search(text), (p.name, x86.search(text))
    for p in sorted(sa.glob("*")):
        depth = 0
        for line in p.read_text().splitlines():
            if re.match(r"#pragma GCC diagnostic push\b", line):
                depth += 1
            elif re.match(r"#pragma GCC diagnostic pop\b", line):
                depth -= 1
                assert depth >= 0, p.name
            elif re.match(r"#pragma GCC diagnostic ignored\b", line):
                assert depth > 0, (p.name, line)
        assert depth == 0, p.name


@requires("gcc")
def test_every_symbol_and_identifier_carries_the_prefix(digits_dir: Path, tmp_path: Path) -> None:
    sa = digits_dir / "standalone"
    defined: list[str] = []
    for src in sorted(sa.glob("*.c")):
        obj = tmp_path / (src.stem + ".o")
        _compile(["gcc", *STRICT, "-O2", "-I", str(sa), "-c", str(src), "-o", str(obj)])
        out = subprocess.run(
            ["nm", "--defined-only", str(obj)], capture_output=True, text=True, check=True
        ).stdout
        defined += [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert defined
    assert all(name.startswith("digits_") for name in defined), sorted(
        n for n in defined if not n.startswith("digits_")
    )
    text = "\n".join(
        p.read_text() for p in sorted(digits_dir.rglob("*")) if p.suffix in (".c", ".h", ".cc")
    )
    assert not re.search(r"\blenet_|\bLENET_", text)
    macros = re.findall(r"#\s*define\s+(\w+)", text)
    assert macros and all(m.startswith("DIGITS_") for m in macros), macros
    typedefs = re.findall(r"}\s*(\w+)\s*;", text)
    typedefs = [t for t in typedefs if t.endswith("_t")]
    assert typedefs and all(t.startswith("digits_") for t in typedefs), typedefs
    enumerators = re.findall(r"^\s+(DIGITS_\w+)\s*=", text, re.M)
    assert enumerators
    for name in set(defined) | set(macros) | set(typedefs) | set(enumerators):
        assert name not in C_KEYWORDS and name not in CXX_KEYWORDS
        assert reserved_reason(name) is None, name


def test_files_layout_banner_guards(seed_dir: Path) -> None:
    report = json.loads((seed_dir / "export.json").read_text())
    sha = report["model"]["sha256"]
    expected = {
        "standalone": {
            "lenet.h",
            "lenet_arith.h",
            "lenet_kernels.h",
            "lenet_weights.h",
            "lenet_weights.c",
            "lenet_model.c",
            "lenet_quantize.c",
            # Both convolutions are tile layers (lenet_layers.c): no generic conv kernel.
            "lenet_layers.h",
            "lenet_layers.c",
            "lenet_host_simd.h",
            "lenet_host_simd.c",
            "lenet_fully_connected_s8.c",
            "lenet_softmax_s8.c",
        },
        "tflm": {"lenet_model_data.h", "lenet_model_data.c", "lenet_tflm_example.cc"},
        "test": {"lenet_test_vectors.h", "lenet_test_vectors.c", "main_host.c", "Makefile"},
    }
    for folder, names in expected.items():
        assert {p.name for p in (seed_dir / folder).iterdir()} == names
    assert not list((seed_dir / "standalone").glob("main*"))
    for p in sorted(seed_dir.rglob("*")):
        if p.suffix not in (".c", ".h", ".cc") and p.name != "Makefile":
            continue
        text = p.read_text()
        head = text[:600]
        # export_model called directly: the banner names firmware_export (the CLI: lenet-edge).
        assert "Generated by firmware_export " in head and sha in head, p
        assert "Command: lenet-edge export-c" in head, p
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b|\d\d:\d\d:\d\d", text), f"timestamp in {p}"
        if p.suffix == ".h":
            guard = re.search(r"#ifndef (\w+)\n#define \1\n", text)
            assert guard and text.rstrip().endswith(f"#endif /* {guard.group(1)} */"), p
            assert '#ifdef __cplusplus\nextern "C" {' in text, p
            assert "#include <stdlib.h>" not in text
    for p in sorted((seed_dir / "standalone").glob("*")):
        text = re.sub(r"/\*.*?\*/|//[^\n]*", "", p.read_text(), flags=re.S)  # code only
        includes = set(re.findall(r"#include <([^>]+)>", text))
        # libc: only these; plus the compilers' intrinsic headers (not libc), each included
        # only under the condition that selects its SIMD path.
        intrinsics = {"arm_acle.h", "immintrin.h"}
        assert includes <= {"stdint.h", "stddef.h", "string.h"} | intrinsics, (p.name, includes)
        for header in includes & intrinsics:
            guard = "_DSP 1" if header == "arm_acle.h" else "_AVX2 1"
            assert re.search(rf"{guard}\n#include <{header}>", text), (p.name, header)
        assert not re.search(r"\b(float|double|malloc|free|calloc|printf)\b", text), p.name
    weights = (seed_dir / "standalone" / "lenet_weights.c").read_text()
    assert re.findall(
        r"^LENET_ALIGN\(16\) const (int8_t|int32_t|uint16_t) lenet_\w+\[\d+\]", weights, re.M
    )
    assert (
        "LENET_MODEL_DATA_ALIGN const unsigned char lenet_model_data["
        in (seed_dir / "tflm" / "lenet_model_data.c").read_text()
    )


@requires("gcc")
def test_model_arrays_are_aligned(seed_dir: Path, tmp_path: Path) -> None:
    prog = tmp_path / "align.c"
    prog.write_text(
        '#include <stdint.h>\n#include <stdio.h>\n#include "lenet_model_data.h"\n'
        '#include "lenet_weights.h"\n'
        'int main(void) { printf("%d %d %d\\n", (int)((uintptr_t)lenet_model_data % 16),'
        " (int)((uintptr_t)lenet_conv1_weights % 16), (int)((uintptr_t)lenet_fc0_bias % 16));"
        " return 0; }\n"
    )
    binary = tmp_path / "align"
    _compile(
        [
            "gcc",
            "-std=c99",
            "-I",
            str(seed_dir / "tflm"),
            "-I",
            str(seed_dir / "standalone"),
            str(prog),
            str(seed_dir / "tflm" / "lenet_model_data.c"),
            str(seed_dir / "standalone" / "lenet_weights.c"),
            "-o",
            str(binary),
        ]
    )
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "0", "0"]


@requires("g++")
def test_tflm_example(seed_dir: Path) -> None:
    """The example registers exactly the model's ops, sizes the arena from the measurement
    plus a margin, and is valid C++ against TFLM's API (checked with minimal stubs)."""
    report = json.loads((seed_dir / "export.json").read_text())
    text = (seed_dir / "tflm" / "lenet_tflm_example.cc").read_text()
    adds = re.findall(r"resolver\.(Add\w+)\(\);", text)
    assert len(adds) == len(set(adds)) == len(report["ops"]) == 6
    assert f"MicroMutableOpResolver<{len(adds)}>" in text
    arena = report["tflm_arena"]
    assert f"kTensorArenaSize = {arena['kTensorArenaSize']};" in text
    assert arena["kTensorArenaSize"] >= arena["measured_bytes"] + arena["margin_bytes"]
    assert arena["kTensorArenaSize"] % 16 == 0
    _compile(
        [
            "g++",
            *CXX_STRICT,
            "-fsyntax-only",
            "-I",
            str(STUB),
            "-I",
            str(seed_dir / "tflm"),
            str(seed_dir / "tflm" / "lenet_tflm_example.cc"),
        ]
    )


def test_cli_export_is_deterministic(
    int8_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = int8_model()
    outs = [tmp_path / "a" / "out", tmp_path / "b" / "out"]
    for out in outs:
        rc = main(["export-c", str(model), "--out", str(out), "--test-vectors", "3", "-q"])
        assert rc == 0
    printed = capsys.readouterr().out
    assert "LENET_SCRATCH_SIZE" in printed and "MACs" in printed
    files = [sorted(p.relative_to(o) for p in o.rglob("*") if p.is_file()) for o in outs]
    assert files[0] == files[1] and len(files[0]) > 15
    for rel in files[0]:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel


def test_cli_replaces_previous_output(int8_model: Any, tmp_path: Path) -> None:
    """A previous export is replaced as a whole (a file left in it goes with it); a folder
    export-c did not write is refused and kept (issue 14: this used to delete it)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    argv = ["export-c", str(int8_model()), "--out", str(out), "--test-vectors", "2", "-q"]
    assert main(argv) == 2
    assert (out / "stale.txt").read_text() == "old"
    (out / "stale.txt").unlink()
    assert main(argv) == 0  # empty: written
    (out / "stale.txt").write_text("old")
    assert main(argv) == 0  # a previous export: replaced whole
    assert not (out / "stale.txt").exists()
    assert (out / "export.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
