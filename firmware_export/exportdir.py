"""An export-c output as found on disk: is it still what export-c wrote?

export.json lists every file export-c wrote with its SHA-256. :func:`export_changes` compares
the tree with that list; the build formats that ``lenet-edge package`` adds (``cmake/``,
``arduino/``, ``wasm/``) are recognised by the record they hold (:data:`PACKAGE_RECORD`) and
checked against the SHA-256 it lists, so that packaging an export does not make it "modified"
while a hand edit inside a package still shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from firmware_export.digest import sha256_file

#: Files a build would compile or include: one added to an export changes what is tested.
SOURCE_SUFFIXES = frozenset({".c", ".h", ".S", ".s", ".cc", ".cpp", ".hpp", ".inc", ".ino"})
#: The record ``lenet-edge package`` writes in each format folder (``DIR/cmake/package.json``).
PACKAGE_RECORD = "package.json"


def read_package_record(folder: Path) -> dict[str, Any] | None:
    """The package record of ``folder`` when lenet-edge wrote one there, else None."""
    try:
        doc = json.loads((folder / PACKAGE_RECORD).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("tool", "")).startswith("lenet-edge"):
        return None
    return doc


def package_folders(directory: Path) -> dict[str, dict[str, Any]]:
    """The format folders of an export (top-level folder name -> its package record)."""
    found = {}
    for sub in sorted(directory.iterdir()) if directory.is_dir() else []:
        if sub.is_dir() and not sub.is_symlink():
            record = read_package_record(sub)
            if record is not None:
                found[sub.name] = record
    return found


def _listed_changes(root: Path, listed: dict[str, Any], shown: str) -> list[str]:
    changes = []
    for rel, want in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            changes.append(f"{shown}{rel} missing")
        elif sha256_file(path) != want:
            changes.append(f"{shown}{rel} modified")
    return changes


def summarize_changes(changes: list[str], shown: int = 4) -> str:
    """The first ``shown`` changes for a one-line message, with how many more there are."""
    more = f" and {len(changes) - shown} more" if len(changes) > shown else ""
    return ", ".join(changes[:shown]) + more


def export_changes(directory: Path, meta: dict[str, Any]) -> list[str]:
    """What differs from the export that export-c wrote: every file listed in export.json
    with its SHA-256 is compared, and every file not listed (a source added to standalone/
    would be compiled) is reported. The files of a package folder are compared with its
    record instead. Empty when the tree is the export (and its packages), byte for byte."""
    listed = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(listed, dict) or not listed:
        return ["export.json lists no files (written by an older or foreign tool)"]
    changes = _listed_changes(directory, listed, "")
    known = {*listed, "export.json"}
    packages = package_folders(directory)
    for name, record in packages.items():
        files = record.get("files")
        if not isinstance(files, dict):
            changes.append(f"{name}/{PACKAGE_RECORD} lists no files")
            continue
        changes += _listed_changes(directory / name, files, f"{name}/")
        known.update(f"{name}/{rel}" for rel in files)
    for path in sorted(directory.rglob("*")):  # build products (the test binary) are not
        rel = path.relative_to(directory).as_posix()  # sources: only added sources count
        if path.suffix in SOURCE_SUFFIXES and rel not in known and path.is_file():
            changes.append(f"{rel} added")
    return changes
