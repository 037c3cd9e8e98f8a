"""Helpers of the package tests: run a build tool, link another build's library into the
mcu-test harness and check it under QEMU, snapshot a tree."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from lenet_edge.commands.mcu_test import Expected


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder): to see that nothing
    changed."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def run(args: list[str], cwd: Path | None = None) -> str:
    """Run a build tool; a failure fails the test with its output. Returns stdout."""
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def run_prebuilt_on_board(
    export_dir: Path,
    board_name: str,
    files: tuple[Path, ...],
    include_dir: Path,
    images: int | str,
    expected: Expected,
    x_test: np.ndarray,
    build_dir: Path,
) -> dict[str, Any]:
    """Link a library another build made into the mcu-test harness of ``board_name`` and run
    the embedded vectors under QEMU; assert every output byte equals TFLM's."""
    from firmware_export import mcu
    from tests.support.export_helpers import need_toolchain

    tool = need_toolchain()
    report = mcu.run_board(
        mcu.read_export(export_dir),
        mcu.load_board(board_name),
        tool,
        build_dir,
        x_test,
        expected,
        mcu.BoardRequest(images=images, count_images=0, prebuilt=mcu.Prebuilt(files, include_dir)),
    )
    check = report["check"]
    assert report["passed"], check
    assert check["mismatched_images"] == 0 and check["mismatched_bytes"] == 0
    want = report["vector_capacity"] if images == "fit" else int(images)
    assert check["images"] == want >= 20, check
    assert report["prebuilt_library"] == [f.name for f in files]
    assert report["memory"]["flash"]["library"] > 30_000  # the prebuilt files are the library
    return report
