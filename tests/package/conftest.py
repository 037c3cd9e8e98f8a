"""Fixtures of the package tests: one export-c output of the short-trained seed model, and
the TFLM reference outputs for the MNIST test images (the bit-exact goal on every build)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from lenet_edge import data
from lenet_edge.cli import main
from lenet_edge.commands.mcu_test import Expected


@pytest.fixture(scope="session")
def pkg_export(int8_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`lenet-edge export-c` of the seed int8 model (never modified: copy it to change it)."""
    out = tmp_path_factory.mktemp("pkg-export") / "lenet_c"
    assert main(["export-c", str(int8_model()), "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture
def fresh_export(pkg_export: Path, tmp_path: Path) -> Path:
    """A private copy of the export, for tests that package it or break it."""
    copy = tmp_path / "export"
    shutil.copytree(pkg_export, copy)
    return copy


@pytest.fixture(scope="session")
def tflm_expected(pkg_export: Path, mnist: data.Mnist) -> Expected:
    """TFLM's int8 outputs for the first N MNIST test images (computed once, on demand)."""
    return Expected((pkg_export / "model.tflite").read_bytes(), mnist.x_test, quiet=True)
