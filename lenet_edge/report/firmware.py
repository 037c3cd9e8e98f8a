"""The "Try the firmware" section: the int8 engine as WebAssembly in the page, from the
export's ``wasm/`` package or built for the page when clang and lld are installed."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

from lenet_edge.report.discover import Found, export_cmd
from lenet_edge.report.render import missing

WASM_DIR = "wasm"


def _wasm_cmd(found: Found) -> str:
    export_dir = found.exports[0][0].parent.as_posix() if found.exports else f"{found.run_dir}/c"
    cmd = f"lenet-edge package {export_dir} --format wasm"
    return cmd if found.exports else f"{export_cmd(found)} && {cmd}"


def try_firmware(found: Found) -> dict[str, Any]:
    """The draw-a-digit section: the engine's WebAssembly build, embedded in the page.

    Taken from an export's ``wasm/`` package when one was built from this model, else built
    for the page (in a temporary directory) when clang and lld are available; else the
    section says how to build it."""
    from firmware_export.errors import FirmwareExportError
    from firmware_export.package import wasm as wasm_pkg

    usable = [(p, ex) for p, ex in found.exports if ex.get("quantize_mnist")]
    if found.exports and not usable:
        return {
            "missing": missing(
                "Not available: the exported model does not take 28×28 MNIST digits, so "
                "there is nothing to draw"
            )
        }
    for path, ex in usable:
        prefix = str(ex.get("prefix", "lenet"))
        pkg = path.parent / WASM_DIR
        wasm_file, js_file = pkg / f"{prefix}.wasm", pkg / f"{prefix}.js"
        if not (wasm_file.is_file() and js_file.is_file()):
            continue
        js = js_file.read_text(encoding="utf-8", errors="replace")
        if str((ex.get("model") or {}).get("sha256")) not in js:
            found.notes.append(
                f"{found.rel(pkg)} was built from another export of the model; not used"
            )
            continue
        return _try_data(ex, wasm_file.read_bytes(), js, f"{found.rel(wasm_file)}")
    if not usable:
        return {"missing": missing("Not built: no export of this model", _wasm_cmd(found))}
    tools = wasm_pkg.missing_tools()
    if tools:
        return {
            "missing": missing(
                f"Not built: no wasm/ package in the export, and {', '.join(tools)} (to build "
                "it for this page) not found",
                _wasm_cmd(found),
            )
        }
    path, ex = usable[0]
    prefix = str(ex.get("prefix", "lenet"))
    with tempfile.TemporaryDirectory(prefix="lenet-report-wasm-") as tmp:
        try:
            wasm_pkg.write(path.parent, Path(tmp), ex)
        except (FirmwareExportError, OSError) as exc:
            return {"missing": missing(f"Not built: {exc}", _wasm_cmd(found))}
        wasm_bytes = (Path(tmp) / f"{prefix}.wasm").read_bytes()
        js = (Path(tmp) / f"{prefix}.js").read_text(encoding="utf-8")
    where = f"built for this page from {found.rel(path.parent)}/standalone"
    return _try_data(ex, wasm_bytes, js, where)


def _try_data(ex: dict[str, Any], wasm_bytes: bytes, js: str, where: str) -> dict[str, Any]:
    from lenet_edge import predict

    prefix = str(ex.get("prefix", "lenet"))
    out = ex.get("output") or {}
    return {
        "missing": None,
        "where": where,
        "wasm_size": f"{len(wasm_bytes):,} B",
        "prefix": prefix,
        "wrapper_js": js,
        "classes": list(range(int(out.get("size", 10)))),
        "config": {
            "wasm": base64.b64encode(wasm_bytes).decode("ascii"),
            "global": f"{prefix}_wasm",
            "box": predict.BOX,
            "field": predict.FIELD,
            "centre": predict.CENTRE,
            "noiseFloor": predict.NOISE_FLOOR,
            "outputScale": out.get("scale"),
            "outputZeroPoint": out.get("zero_point"),
        },
    }
