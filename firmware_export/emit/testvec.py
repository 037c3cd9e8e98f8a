"""Render ``test/``: test vectors with TFLM's outputs, a host runner and its Makefile."""

from __future__ import annotations

import numpy as np

from firmware_export.cflags import C_STD, OPTIMIZE_FLAGS, WARNINGS
from firmware_export.csyntax import Names, c_values, render


def render_test(
    prefix: str,
    banner: str,
    hash_banner: str,
    inputs: np.ndarray,
    expected: np.ndarray,
    labels: np.ndarray | None,
    raw: np.ndarray | None,
    source: str,
    standalone_files: list[str],
    optimize: str = "speed",
) -> dict[str, str]:
    """Files of ``test/``, keyed by file name. ``inputs``/``expected`` are int8 [N, ...];
    the Makefile builds at ``optimize``'s level (``export-c --optimize``)."""
    n = Names(prefix)
    p, P = prefix, prefix.upper()
    for suffix in ("test_inputs", "test_expected", "test_labels", "test_raw"):
        n(suffix)
    for suffix in ("TEST_VECTORS_H", "TEST_VECTOR_COUNT", "TEST_HAS_RAW"):
        n.macro(suffix)
    count = len(inputs)
    lab = labels if labels is not None else np.full(count, 255, dtype=np.uint8)
    common = {"banner": banner, "p": p, "P": P, "count": count, "source": source}
    binary = f"{p}_test"
    sources = [f"$(STANDALONE)/{f}" for f in sorted(standalone_files) if f.endswith(".c")]
    headers = [f"$(STANDALONE)/{f}" for f in sorted(standalone_files) if f.endswith(".h")]
    return {
        f"{p}_test_vectors.h": render("test_vectors.h.j2", **common, raw=raw is not None),
        f"{p}_test_vectors.c": render(
            "test_vectors.c.j2",
            **common,
            inputs=[c_values(v.reshape(-1).tolist(), 32, "        ") for v in inputs],
            expected=[c_values(v.reshape(-1).tolist(), 64, "").strip() for v in expected],
            labels=c_values(np.asarray(lab).reshape(-1).tolist(), 32),
            raw=[c_values(v.reshape(-1).tolist(), 28, "        ") for v in raw]
            if raw is not None
            else [],
        ),
        "main_host.c": render("main_host.c.j2", **common, raw=raw is not None),
        "Makefile": render(
            "Makefile.j2",
            banner=hash_banner,
            binary=binary,
            cflags=" ".join((C_STD, OPTIMIZE_FLAGS[optimize], *WARNINGS)),
            sources=" ".join([*sources, f"{p}_test_vectors.c", "main_host.c"]),
            headers=" ".join([*headers, f"{p}_test_vectors.h"]),
        ),
    }
