"""bench's "before" columns: the engine of commit cec48d5 against this run, layer by layer."""

from __future__ import annotations

from typing import Any

from lenet_edge import bench


def _core(label: str, counts: list[int], macs: list[int]) -> dict[str, Any]:
    layers = [
        {"name": f"l{i}", "instructions": n, "macs": m, "per_mac": round(n / m, 3) if m else None}
        for i, (n, m) in enumerate(zip(counts, macs, strict=True))
    ]
    total = sum(counts)
    return {
        "label": label,
        "instructions": total,
        "per_mac": total / sum(macs),
        "per_layer": layers,
    }


def test_baseline_is_the_engine_before_issue_12() -> None:
    before = bench.engine_before()
    assert before["commit"] == "cec48d5" and before["variant"] == "seed"
    m4 = next(c for c in before["cores"] if c["label"] == "Cortex-M4 (DSP)")
    assert m4["instructions"] == 429_795
    assert sum(layer["instructions"] for layer in m4["per_layer"]) + 51 == m4["instructions"]
    labels = {c["label"] for c in before["cores"]}
    assert {"Cortex-M3 (portable C)", "Cortex-M0 (portable C)"} <= labels


def test_before_and_now_per_layer_and_per_mac() -> None:
    macs = [100, 50]
    main = {"variant": "seed", "cores": [_core("Cortex-M4 (DSP)", [130, 90], macs)]}
    before = {
        "commit": "abc1234",
        "variant": "seed",
        "cores": [_core("Cortex-M4 (DSP)", [170, 100], macs)],
    }
    text = "\n".join(bench._before_markdown(main, before))
    assert "commit abc1234" in text
    assert "| l0 | 100 | 170 (1.70) | 130 (1.30) |" in text
    assert "| l1 | 50 | 100 (2.00) | 90 (1.80) |" in text
    assert "**270** (1.80) | **220** (1.47)" in text
    # Another model, or no baseline: no table rather than a wrong comparison.
    assert bench._before_markdown({**main, "variant": "modern"}, before) == []
    assert bench._before_markdown(main, None) == []
