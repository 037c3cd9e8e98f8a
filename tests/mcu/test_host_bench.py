"""lenet_edge.host_bench: the host comparison of ``lenet-edge bench`` carries LiteRT's loop
time, its overhead (the trivial model) and its kernel time for each LiteRT variant, the engine
at each build, and the ratios, all consistent with each other. No timing is asserted (the
machine is shared): only that the figures exist and agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firmware_export.export import export_model, write_export
from lenet_edge import host_bench
from lenet_edge.interpreters import parse_tflite
from tests.support.export_helpers import requires


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, int8_model: Any) -> Path:
    model = int8_model()
    result = export_model(model.read_bytes(), model_name=model.name, n_vectors=2)
    return write_export(result, tmp_path_factory.mktemp("hostbench") / "c")


@requires("gcc")
def test_measure_host_carries_loop_overhead_kernel_time_and_ratios(
    export_dir: Path, mnist: Any
) -> None:
    model = (export_dir / "model.tflite").read_bytes()
    r = host_bench.measure_host(
        export_dir, model, mnist.x_test[:40], rounds=2, passes=1, ref_passes=1, chunk=20
    )
    assert r["images"] == 40 and r["rounds"] == 2 and r["chunk"] == 20
    assert set(r["litert"]) == {"litert", "litert-ref"}
    for name, lit in r["litert"].items():
        assert lit["kernels"].startswith("reference" if name == "litert-ref" else "default")
        assert lit["images"] == 40 and lit["passes"] == 1 and lit["threads"] == 1
        assert lit["loop_us_per_image"] == lit["us_per_image"] > 0
        assert lit["overhead_us_per_image"] > 0
        assert lit["kernel_us_per_image"] == round(
            lit["loop_us_per_image"] - lit["overhead_us_per_image"], 2
        )
        assert len(lit["rounds_us_per_image"]) == len(lit["overhead_rounds_us_per_image"]) == 2
        assert lit["loop_us_per_image"] == min(lit["rounds_us_per_image"])
        assert lit["overhead_us_per_image"] == min(lit["overhead_rounds_us_per_image"])
    assert list(r["engine"]) == ["-O2 -march=native", "-O2"]
    for label, eng in r["engine"].items():
        assert eng["build"] == label and eng["bit_exact"] and eng["images"] == 40
        assert eng["us_per_image"] == min(eng["rounds_us_per_image"]) > 0
    assert r["engine"]["-O2"]["simd"] == "portable"
    assert len(r["ratios"]) == 4
    for row in r["ratios"]:
        lit, eng = r["litert"][row["litert"]], r["engine"][row["engine"]]
        assert row["vs_loop"] == round(lit["loop_us_per_image"] / eng["us_per_image"], 2)
        if lit["kernel_us_per_image"] > 0:
            assert row["vs_kernel"] == round(lit["kernel_us_per_image"] / eng["us_per_image"], 2)
    info = parse_tflite(model)
    assert r["trivial_model"]["input"] == info.input.as_dict() | {"index": 0}
    assert r["trivial_model"]["output"]["shape"] == list(info.output.shape)
    assert r["trivial_model"]["output"]["scales"] == list(info.output.scales)
    assert r["trivial_model"]["ops"] == ["RESHAPE", "SLICE", "QUANTIZE"]
    assert r["load_average_before"] is None or len(r["load_average_before"]) == 3
    assert "\n".join(host_bench.host_markdown(r, "seed")).count("standalone C engine") == 2


def _host(loop: float, overhead: float, engine: dict[str, float]) -> dict[str, Any]:
    lit = {
        "loop_us_per_image": loop,
        "overhead_us_per_image": overhead,
        "kernel_us_per_image": round(loop - overhead, 2),
        "passes": 5,
    }
    eng = {k: {"us_per_image": v, "simd": "avx2", "passes": 5} for k, v in engine.items()}
    litert = {"litert": lit, "litert-ref": {**lit, "passes": 2}}
    return {
        "images": 10_000,
        "rounds": 3,
        "chunk": 250,
        "litert": litert,
        "engine": eng,
        "ratios": host_bench.ratios(litert, eng),
        "trivial_model": {"ops": ["RESHAPE", "SLICE", "QUANTIZE"]},
        "load_average_before": [0.5, 0.25, 1.0],
        "load_average_after": None,
        "interpreters": {"tflm": {"us_per_image": 1234.5, "timed": "one pass"}},
    }


def test_ratios_and_markdown_with_and_without_the_loop() -> None:
    host = _host(80.0, 4.0, {"-O2 -march=native": 20.0, "-O2": 160.0})
    rows = {(r["engine"], r["litert"]): r for r in host["ratios"]}
    assert rows["-O2 -march=native", "litert"]["vs_loop"] == 4.0
    assert rows["-O2 -march=native", "litert"]["vs_kernel"] == 3.8
    assert rows["-O2", "litert"]["vs_loop"] == 0.5
    assert rows["-O2", "litert"]["vs_kernel"] == 0.47
    md = "\n".join(host_bench.host_markdown(host, "seed"))
    assert "| LiteRT, default kernels (XNNPACK) | 80.00 | 4.00 | 76.00 |" in md
    assert "| `-O2 -march=native` | 4.00× | 3.80× | 4.00× | 3.80× |" in md
    assert "| `-O2` | 0.50× | 0.47× | 0.50× | 0.47× |" in md
    assert "RESHAPE → SLICE → QUANTIZE" in md
    assert "before: 0.50 / 0.25 / 1.00, after: unknown" in md
    assert "2 passes (LiteRT, reference kernels)" in md
    assert "| TFLM Python interpreter | 1,234.5 | one pass |" in md
    # A kernel time at or below zero (an overhead as large as the loop) gives no ratio.
    assert host_bench.ratios(*_pair(5.0, 5.0))[0]["vs_kernel"] is None


def _pair(loop: float, overhead: float) -> tuple[dict[str, Any], dict[str, Any]]:
    host = _host(loop, overhead, {"-O2": 1.0})
    return host["litert"], host["engine"]


def test_script_refuses_to_overwrite_the_model_or_a_foreign_markdown(tmp_path: Path) -> None:
    """scripts/bench_host_engine.py writes --out and a .md beside it: before any measurement
    it refuses the model as --out, and a .md it did not write; both files stay as they were."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_host_engine.py"
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3 not really a model")
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    for out, why in ((model, "would overwrite the model"), (tmp_path / "notes.json", "notes.md")):
        proc = subprocess.run(
            [sys.executable, str(script), str(model), "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and why in proc.stderr
        assert "Traceback" not in proc.stderr
    assert model.read_bytes() == b"TFL3 not really a model"
    assert notes.read_text() == "# my notes\n"
    assert not (tmp_path / "notes.json").exists()
