"""Test support: helpers shared by the test groups (imported as ``tests.support.*``).

``ROOT`` is the repository, ``C_DIR`` the C harnesses and stand-in headers the tests compile.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "tests" / "c"
