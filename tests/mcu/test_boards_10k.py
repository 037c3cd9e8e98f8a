"""Every board, every LeNet variant, all 10,000 MNIST test images: the engine's output bytes
streamed out of the emulated core equal TFLM's (issue 12: the faster kernels stay bit-exact on
each core's own path: DSP on the M4 and M7, packed 64-bit on the M3 and the M4 without DSP,
inline ARMv6-M assembly on the M0), and the seed model's `export-c --optimize size` export
(generic int8 convolutions, built at -Os) on every board too. Long: `make test-slow` (40
runs; 40 minutes on the 2-core AMD EPYC with other jobs running, before the size runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lenet_edge.cli import main
from tests.support.export_helpers import MCU_TOOLS, requires
from tests.support.keras_models import keras_tutorial_models

pytestmark = [pytest.mark.slow, requires(*MCU_TOOLS)]

VARIANTS: dict[str, dict[str, str]] = {
    "seed": {},
    "modern": {"variant": "modern"},
    "tanh": {"activation": "tanh"},
    "relu": {"activation": "relu"},
    "maxpool": {"pooling": "max"},
    "c3full": {"c3": "full"},
}
BOARDS = [
    ("mps2-an386", []),
    ("mps2-an386", ["--no-dsp"]),
    ("mps2-an500", []),
    ("stm32vldiscovery", []),
    ("microbit", []),
]


@pytest.fixture(scope="module")
def exports(
    int8_model: Any, mnist: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """`export-c` of each variant (short-trained), and of the Keras tutorial's 28x28 SAME model."""
    models = {name: int8_model(**kw) for name, kw in VARIANTS.items()}
    models["keras_same"] = keras_tutorial_models(mnist, tmp_path_factory.mktemp("keras"))[
        "keras_per_channel"
    ]
    models["seed_size"] = models["seed"]
    out = {}
    for name, path in models.items():
        target = tmp_path_factory.mktemp(f"export-{name}") / "c"
        size = ["--optimize", "size"] if name.endswith("_size") else []
        assert main(["export-c", str(path), "--out", str(target), *size, "-q"]) == 0
        out[name] = target
    return out


@pytest.mark.parametrize(("board", "flags"), BOARDS, ids=[b + "".join(f) for b, f in BOARDS])
@pytest.mark.parametrize("variant", [*VARIANTS, "keras_same", "seed_size"])
def test_all_10k_images_on_every_board(
    variant: str, board: str, flags: list[str], exports: dict[str, Path], tmp_path: Path
) -> None:
    report_path = tmp_path / "mcu.json"
    argv = ["mcu-test", str(exports[variant]), "--board", board, "--images", "all", *flags]
    rc = main([*argv, "--json", str(report_path), "-q"])
    report = json.loads(report_path.read_text())
    r = report["boards"][0]
    assert rc == 0, r["check"]
    assert r["mode"] == "stream"
    assert r["dsp_path_enabled"] == (board in ("mps2-an386", "mps2-an500") and not flags)
    assert r["check"] == {
        "images": 10000,
        "mismatched_images": 0,
        "mismatched_bytes": 0,
        "first_mismatch": -1,
    }
