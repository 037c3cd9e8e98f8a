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


def test_the_provenance_section_renders_links_and_the_command(tmp_path: Path) -> None:
    from lenet_edge.report import render

    c = _export(tmp_path)
    template = render._environment().get_template("sections/provenance.html.j2")
    base = {"rows": [], "version": "0", "command": "c", "versions": "", "notes": []}
    found = Found(tmp_path, exports=[(c / "export.json", {})])
    html = template.render(s={**base, "packages": build_formats(found)})
    assert "<code>lenet-edge package c --format all</code>" in html
    (c / "cmake").mkdir()
    (c / "cmake" / "package.json").write_text(json.dumps({"tool": "lenet-edge 0.1.0"}))
    html = template.render(s={**base, "packages": build_formats(found)})
    assert '<a href="c/cmake/">cmake: <code>c/cmake</code></a>' in html
