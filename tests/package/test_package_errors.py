"""`lenet-edge package` refuses what it must not touch: one `error:` line, exit 2, and
nothing changed on disk (the whole case directory compared byte for byte)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_export import package
from firmware_export.exportdir import export_changes
from lenet_edge.cli import main
from tests.package.helpers import tree


def _refused(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = tree(root)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert tree(root) == before  # nothing written, nothing left behind
    return err


def test_package_refuses_a_folder_that_is_not_an_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "project"
    d.mkdir()
    (d / "main.c").write_text("int main(void) { return 0; }\n")
    err = _refused(["package", str(d), "--format", "cmake"], tmp_path, capsys)
    assert "not an export-c output (no export.json)" in err
    err = _refused(["package", str(tmp_path / "absent"), "--format", "all"], tmp_path, capsys)
    assert "is not a directory" in err


@pytest.mark.parametrize("edit", ["modified", "added"])
def test_package_refuses_a_modified_export(
    fresh_export: Path, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    if edit == "modified":
        h = fresh_export / "standalone" / "lenet.h"
        h.write_text(h.read_text() + "/* edited */\n")
        want = "standalone/lenet.h modified"
    else:
        (fresh_export / "standalone" / "extra.c").write_text("int lenet_extra;\n")
        want = "standalone/extra.c added"
    err = _refused(["package", str(fresh_export), "--format", "cmake"], fresh_export, capsys)
    assert want in err and "re-run `lenet-edge export-c`" in err


def test_package_refuses_a_users_folder_of_the_same_name(
    fresh_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = fresh_export / "cmake"
    mine.mkdir()
    (mine / "CMakeLists.txt").write_text("project(mine)\n")
    err = _refused(["package", str(fresh_export), "--format", "cmake"], fresh_export, capsys)
    assert f"{mine} holds files that `lenet-edge package` did not write" in err
    # `all` checks every folder first: the other formats are not written either.
    _refused(["package", str(fresh_export), "--format", "all"], fresh_export, capsys)


def test_a_hand_edit_inside_a_package_is_a_modified_export(
    fresh_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["package", str(fresh_export), "--format", "cmake", "-q"]) == 0
    meta = json.loads((fresh_export / "export.json").read_text())
    assert export_changes(fresh_export, meta) == []
    lists = fresh_export / "cmake" / "CMakeLists.txt"
    lists.write_text(lists.read_text() + "# mine\n")
    assert export_changes(fresh_export, meta) == ["cmake/CMakeLists.txt modified"]
    err = _refused(["package", str(fresh_export), "--format", "cmake"], fresh_export, capsys)
    assert "cmake/CMakeLists.txt modified" in err


@pytest.mark.skipif(package.writer("wasm") is not None, reason="the wasm format is installed")
def test_wasm_without_its_writer_is_not_available_yet(
    fresh_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["package", str(fresh_export), "--format", "wasm"], fresh_export, capsys)
    assert "--format wasm is not available yet" in err


def test_all_writes_every_available_format_and_names_them(
    fresh_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["package", str(fresh_export), "--format", "all"]) == 0
    out = capsys.readouterr().out
    for name in package.FORMATS:
        if name in package.available():
            assert f"{name} -> " in out
            assert (fresh_export / name / "package.json").is_file()
        else:
            assert name in out.split("not available here:")[1]
            assert not (fresh_export / name).exists()
