"""export-c: the standalone C engine against the TFLM interpreter, bit for bit.

For every LeNet variant (seed, tanh, relu, max pooling, full C3) and the common Keras-tutorial
LeNet (28x28, SAME padding, Flatten with an unknown batch, per-tensor and per-channel dense),
the generated library is compiled into tests/c/harness.c twice (-O2, and ASan+UBSan) and all
10,000 MNIST test images are compared with TFLM, every output byte. Because short training
runs leave the sigmoid variants with nearly constant outputs, every intermediate layer is
also compared (the model is cut at each engine step's output tensor), so each kernel is
checked on rich data.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_export.cflags import CXX_STRICT
from firmware_export.emit.standalone import StandaloneWriter
from firmware_export.export import export_model, model_feed, write_export
from firmware_export.mnist import mnist_input, mnist_inputs
from firmware_export.plan import Plan, build_plan
from firmware_export.reader import load_graph
from tests.support import C_DIR
from tests.support.export_helpers import (
    SANITIZE,
    EngineRun,
    compile_harness,
    requires,
    skip_unless,
    tflm_tensors,
)
from tests.support.keras_models import keras_tutorial_models
from tests.support.tflite_build import retarget_output

pytestmark = requires("gcc")

LENET_VARIANTS: dict[str, dict[str, str]] = {
    "seed": {},
    "tanh": {"activation": "tanh"},
    "relu": {"activation": "relu"},
    "maxpool": {"pooling": "max"},
    "c3full": {"c3": "full"},
}
#: int8 models with a float32 / uint8 interface (--io): the engine strips the conversions.
IO_VARIANTS: dict[str, dict[str, str]] = {
    "io_float32": {"io": "float32", "activation": "relu"},
    "io_uint8": {"io": "uint8", "activation": "relu"},
}
IO_IMAGES = 2000
AVX2 = ["-O2", "-mavx2", "-mfma"]


def _cpu_has(flag: str) -> bool:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return False
    return any(flag in line.split() for line in lines if line.startswith("flags"))


HAS_AVX2 = _cpu_has("avx2")
#: Exported with --optimize size (generic int8 convolutions, exp computed) and built at -Os,
#: as that export's Makefile does; the name is the speed variant's plus "_size". (The
#: synthetic kernel models cover the size engine's other paths: SAME padding, strides, ...)
SIZE_VARIANTS = ["seed_size"]
ALL_VARIANTS = [
    *LENET_VARIANTS,
    "keras_per_tensor",
    "keras_per_channel",
    *IO_VARIANTS,
    *SIZE_VARIANTS,
]


@dataclass
class Engine:
    """One exported model, its engine running on all test images, and TFLM's reference."""

    name: str
    model_bytes: bytes
    out_dir: Path
    plan: Plan
    inputs: np.ndarray
    runs: dict[str, EngineRun]  # "O2" (with the per-layer trace) and "sanitize"
    work: Path
    _reference: dict[int, np.ndarray] = field(default_factory=dict)

    def raw_tensor(self, step: Any) -> int:
        """The output of the first op of a fused step (e.g. CONV_2D before LOGISTIC)."""
        return int(load_graph(self.model_bytes).ops[step.ops[0]].outputs[0])

    def reference(self) -> dict[int, np.ndarray]:
        """TFLM's value of every engine step's output tensor and of the raw output of its
        first op, for every input (one interpreter pass)."""
        if not self._reference:
            tensors = [s.out_tensor for s in self.plan.steps]
            tensors += [self.raw_tensor(s) for s in self.plan.steps if s.ops]
            tensors += [load_graph(self.model_bytes).outputs[0]]
            self._reference = tflm_tensors(
                self.model_bytes, model_feed(self.plan, self.inputs), tuple(dict.fromkeys(tensors))
            )
        return self._reference

    @property
    def expected(self) -> np.ndarray:
        return self.reference()[self.plan.steps[-1].out_tensor]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, mnist: Any, int8_model: Any) -> Any:
    """``engines(name)``: the :class:`Engine` of a variant, built on first use.

    Both builds start running in the background as soon as the model is exported, so they
    overlap with the TFLM reference run (the slow part).
    """
    cache: dict[str, Engine] = {}
    keras_paths: dict[str, Path] = {}

    def get(name: str) -> Engine:
        if name in cache:
            return cache[name]
        work = tmp_path_factory.mktemp(f"engine_{name}")
        optimize = "size" if name in SIZE_VARIANTS else "speed"
        base = name.removesuffix("_size")
        level = "-Os" if optimize == "size" else "-O2"
        if base in LENET_VARIANTS:
            path = int8_model(**LENET_VARIANTS[base])
        elif base in IO_VARIANTS:
            path = int8_model(**IO_VARIANTS[base])
        else:
            if not keras_paths:
                keras_paths.update(keras_tutorial_models(mnist, tmp_path_factory.mktemp("keras")))
            path = keras_paths[base]
        model_bytes = path.read_bytes()
        result = export_model(
            model_bytes,
            model_name=path.name,
            n_vectors=20,
            images=mnist.x_test,
            labels=mnist.y_test,
            optimize=optimize,
        )
        out = write_export(result, work / "out")
        plan = result.plan
        images = mnist.x_test[:IO_IMAGES] if name in IO_VARIANTS else mnist.x_test
        inputs = mnist_inputs(images, plan.input.shape, plan.input.scale, plan.input.zero_point)
        sa = out / "standalone"
        o2 = compile_harness(sa, work / "harness_O2", [level], trace=True)
        san = compile_harness(sa, work / "harness_sanitize", [*SANITIZE, level])
        runs = {
            "O2": EngineRun(o2, inputs, plan.output.size, work, trace=True),
            "sanitize": EngineRun(san, inputs, plan.output.size, work),
        }
        if HAS_AVX2:  # the x86 SIMD path, every layer traced
            avx2 = compile_harness(sa, work / "harness_avx2", [*AVX2, level], trace=True)
            runs["avx2"] = EngineRun(avx2, inputs, plan.output.size, work, trace=True)
        cache[name] = Engine(name, model_bytes, out, plan, inputs, runs, work)
        return cache[name]

    return get


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_bit_exact_with_tflm_on_10k_images_O2(engines: Any, variant: str) -> None:
    e = engines(variant)
    assert len(e.inputs) == (IO_IMAGES if variant in IO_VARIANTS else 10000)
    out, scratch = e.runs["O2"].result()
    mismatched = np.flatnonzero((out != e.expected).any(axis=1))
    assert mismatched.size == 0, (
        f"{variant}: {mismatched.size} of 10000 images differ from TFLM (first: "
        f"{mismatched[:5].tolist()})"
    )
    assert scratch == max(e.plan.arena_size, 4)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_bit_exact_with_tflm_on_10k_images_sanitized(engines: Any, variant: str) -> None:
    """ASan + UBSan (no recovery): any out-of-bounds access or UB aborts the run. The harness
    allocates exactly <PREFIX>_SCRATCH_SIZE bytes, so a scratch overrun is caught too."""
    e = engines(variant)
    out, _ = e.runs["sanitize"].result()
    assert np.array_equal(out, e.expected)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_x86_simd_path_bit_exact_on_every_layer(engines: Any, variant: str) -> None:
    """The AVX2 build (-mavx2): the same output as TFLM on every image, and every layer's
    output equal to the portable build's (which the next test checks against TFLM)."""
    if not HAS_AVX2:
        pytest.skip("this CPU has no AVX2")
    e = engines(variant)
    out, _ = e.runs["avx2"].result()
    assert np.array_equal(out, e.expected)
    sizes = [s.dst.size for s in e.plan.steps]
    for step, a, b in zip(
        e.plan.steps, e.runs["avx2"].layers(sizes), e.runs["O2"].layers(sizes), strict=True
    ):
        assert np.array_equal(a, b), f"{variant}: layer {step.name}"


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_layer_bit_exact_with_tflm(engines: Any, variant: str) -> None:
    """Every engine step's output (through the <PREFIX>_TRACE hook) equals TFLM's tensor."""
    e = engines(variant)
    sizes = [s.dst.size for s in e.plan.steps]
    layers = e.runs["O2"].layers(sizes)
    ref = e.reference()
    for step, got in zip(e.plan.steps, layers, strict=True):
        expected = ref[step.out_tensor]
        assert got.shape == expected.shape, step.name
        bad = int((got != expected).any(axis=1).sum())
        assert bad == 0, f"{variant}: layer {step.name} differs from TFLM on {bad} images"
    # Where a briefly trained model saturates a fused activation, the fused output says
    # little about the arithmetic before it: check the raw CONV_2D / FULLY_CONNECTED output
    # too, by exporting the model cut at that tensor.
    for step in e.plan.steps[:-1]:
        if len(np.unique(ref[step.out_tensor])) > 8 or len(step.ops) < 2:
            continue
        raw = e.raw_tensor(step)
        assert len(np.unique(ref[raw])) > 8, f"{step.name}: raw output nearly constant too"
        cut = retarget_output(e.model_bytes, raw)
        graph = load_graph(cut)
        plan = build_plan(graph, e.plan.optimize)
        files = StandaloneWriter(plan, "lenet", "/* cut */", None).render(
            {op.index: op.kind for op in graph.ops}
        )
        d = e.work / f"cut_{step.name}"
        d.mkdir(exist_ok=True)
        for fname, text in files.items():
            (d / fname).write_text(text)
        level = "-Os" if plan.optimize == "size" else "-O2"
        binary = compile_harness(d, e.work / f"harness_cut_{step.name}", [level])
        out, _ = EngineRun(binary, e.inputs, plan.output.size, e.work).result()
        bad = int((out != ref[raw]).any(axis=1).sum())
        assert bad == 0, f"{variant}: raw output of {step.name} differs on {bad} images"


@pytest.mark.parametrize("variant", sorted(IO_VARIANTS))
def test_float_and_uint8_interfaces(engines: Any, variant: str) -> None:
    """For --io float32/uint8 models the engine is the int8 core; TFLM's own outputs are
    exactly the engine's int8 outputs converted at the edge, and the example feeds the
    model's type."""
    e = engines(variant)
    assert e.plan.model_input is not None and e.plan.model_output is not None
    graph = load_graph(e.model_bytes)
    assert sorted(graph.ops[i].kind for i in e.plan.stripped_ops) == (
        ["DEQUANTIZE", "QUANTIZE"] if variant == "io_float32" else ["QUANTIZE", "QUANTIZE"]
    )
    engine_out, _ = e.runs["O2"].result()
    model_out = e.reference()[graph.outputs[0]]
    q = engine_out.astype(np.int32)
    if variant == "io_uint8":
        assert np.array_equal(model_out.astype(np.int32), q + 128)
    else:
        real = np.float32(e.plan.output.scale) * (q - e.plan.output.zero_point).astype(np.float32)
        assert np.allclose(model_out, real, rtol=1e-6, atol=0)
    report = json.loads((e.out_dir / "export.json").read_text())
    dtype = "FLOAT32" if variant == "io_float32" else "UINT8"
    assert report["model_interface"]["input_dtype"] == dtype
    example = (e.out_dir / "tflm" / "lenet_tflm_example.cc").read_text()
    assert ("input->data.f[i] = image[i];" in example) == (variant == "io_float32")
    assert ("input->data.uint8[i]" in example) == (variant == "io_uint8")
    stub = C_DIR / "tflm_stub"
    subprocess.run(
        [
            "g++",
            *CXX_STRICT,
            "-fsyntax-only",
            "-I",
            str(stub),
            "-I",
            str(e.out_dir / "tflm"),
            str(e.out_dir / "tflm" / "lenet_tflm_example.cc"),
        ],
        check=True,
    )


def test_seed_model_numbers(engines: Any) -> None:
    """The seed LeNet-5: sparse C3 computes 150,000 MACs instead of 240,000, conv+act+pool
    are fused, and the scratch arena meets the 2.5 KB goal (TFLM needs ~14 KB)."""
    e = engines("seed")
    report = json.loads((e.out_dir / "export.json").read_text())
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert [s.kind for s in e.plan.steps] == [
        "conv",
        "conv",
        "fully_connected",
        "fully_connected",
        "fully_connected",
        "softmax",
    ]
    assert layers["conv0"]["ops"] == ["CONV_2D", "LOGISTIC", "AVERAGE_POOL_2D"]
    assert layers["conv0"]["macs"] == 117_600
    assert layers["conv1"]["macs"] == 150_000
    assert layers["conv1"]["tflm_macs"] == 240_000
    assert layers["conv1"]["skipped_input_maps"] == 36
    assert report["macs"] == 326_520
    assert report["scratch_size"] <= 2560
    assert report["tflm_arena"]["measured_bytes"] > 4 * report["scratch_size"]


def test_full_c3_computes_dense_macs(engines: Any) -> None:
    e = engines("c3full")
    conv1 = next(s for s in e.plan.steps if s.name == "conv1")
    assert conv1.macs == conv1.tflm_macs == 240_000


def test_keras_tutorial_shape_chain_is_folded(engines: Any) -> None:
    for name in ("keras_per_tensor", "keras_per_channel"):
        e = engines(name)
        graph = load_graph(e.model_bytes)
        kinds = [op.kind for op in graph.ops]
        assert {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"} <= set(kinds)
        folded = [graph.ops[i].kind for i in e.plan.folded_ops]
        assert sorted(folded) == ["PACK", "SHAPE", "STRIDED_SLICE"]
        conv0 = e.plan.steps[0]
        assert (conv0.pad_top, conv0.pad_left, conv0.conv_h) == (2, 2, 28)  # type: ignore[attr-defined]
    fc = [s for s in engines("keras_per_tensor").plan.steps if s.kind == "fully_connected"]
    assert not any(s.per_channel for s in fc)  # type: ignore[attr-defined]
    fc = [s for s in engines("keras_per_channel").plan.steps if s.kind == "fully_connected"]
    assert all(s.per_channel for s in fc)  # type: ignore[attr-defined]


def test_make_test_passes(engines: Any) -> None:
    skip_unless("make")
    e = engines("seed")
    proc = subprocess.run(
        ["make", "-C", str(e.out_dir / "test"), "test"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "20/20 test vectors bit-exact with TFLM" in proc.stdout


def test_quantize_mnist_matches_python_on_all_test_images(
    engines: Any, mnist: Any, test_inputs_int8: Any, tmp_path: Path
) -> None:
    """<prefix>_quantize_mnist (an export-time table) == preprocess + quantize, 10k images."""
    for name in ("seed", "keras_per_channel"):
        e = engines(name)
        sa = e.out_dir / "standalone"
        binary = tmp_path / f"quantize_{name}"
        cmd = [
            "gcc",
            "-O2",
            "-std=c99",
            "-I",
            str(sa),
            '-DENGINE_HEADER="lenet.h"',
            "-DENGINE_INPUT_SIZE=LENET_INPUT_SIZE",
            "-DENGINE_QUANTIZE=lenet_quantize_mnist",
            str(sa / "lenet_quantize.c"),
            str(C_DIR / "quantize_harness.c"),
            "-o",
            str(binary),
        ]
        subprocess.run(cmd, check=True)
        raw = tmp_path / "raw.bin"
        np.ascontiguousarray(mnist.x_test).tofile(raw)
        out = tmp_path / "q.bin"
        subprocess.run([str(binary), str(raw), str(out)], check=True)
        got = np.fromfile(out, dtype=np.int8).reshape(e.inputs.shape)
        assert np.array_equal(got, e.inputs)
    seed = engines("seed")
    ref = test_inputs_int8(seed.plan.input.scale, seed.plan.input.zero_point)
    assert np.array_equal(seed.inputs, ref)
    table = mnist_input(seed.plan.input.shape, seed.plan.input.scale, seed.plan.input.zero_point)
    assert table is not None and table.pad == 2


def test_api_is_robust_to_bad_pointers(engines: Any, tmp_path: Path) -> None:
    e = engines("seed")
    sa = e.out_dir / "standalone"
    binary = tmp_path / "api_check"
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            *SANITIZE,
            "-I",
            str(sa),
            *sorted(map(str, sa.glob("*.c"))),
            str(C_DIR / "api_check.c"),
            "-o",
            str(binary),
        ],
        check=True,
    )
    proc = subprocess.run([str(binary)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "api ok" in proc.stdout


def test_output_copy_of_model_and_hashes(engines: Any) -> None:
    import hashlib

    e = engines("relu")
    report = json.loads((e.out_dir / "export.json").read_text())
    files = sorted(str(p.relative_to(e.out_dir)) for p in e.out_dir.rglob("*") if p.is_file())
    assert sorted([*report["files"], "export.json"]) == files
    for rel, digest in report["files"].items():
        assert hashlib.sha256((e.out_dir / rel).read_bytes()).hexdigest() == digest
    assert (e.out_dir / "model.tflite").read_bytes() == e.model_bytes
