"""The report links the build formats that `lenet-edge package` added to the run's export."""

from __future__ import annotations

import json
from pathlib import Path

from lenet_edge.report.discover import Found
from lenet_edge.report.sections import build_formats


def _export(run: Path) -> Path:
    c = run / "c"
    c.mkdir(parents=True)
    (c / "export.json").write_text(json.dumps({"tool": "lenet-edge 0.1.0"}))
    return c


def test_links_every_packaged_format(tmp_path: Path) -> None:
    c = _export(tmp_path)
    for name in ("cmake", "wasm", "arduino"):
        (c / name).mkdir()
        (c / name / "package.json").write_text(json.dumps({"tool": "lenet-edge 0.1.0"}))
    (c / "arduino" / "Lenet").mkdir()
    (c / "notes").mkdir()  # a folder without a record is not a format
    found = Found(tmp_path, exports=[(c / "export.json", {})])
    assert build_formats(found) == [
        {"format": "arduino", "path": "c/arduino/Lenet"},
        {"format": "cmake", "path": "c/cmake"},
        {"format": "wasm", "path": "c/wasm"},
    ]


def test_names_the_command_when_nothing_is_packaged(tmp_path: Path) -> None:
    c = _export(tmp_path)
    found = Found(tmp_path, exports=[(c / "export.json", {})])
    assert build_formats(found) == [{"missing": "lenet-edge package c --format all", "path": "c"}]
