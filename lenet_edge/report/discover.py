"""Finding a run directory's files by content (SHA-256), not by name.

``train.json`` (``train``), the int8 ``.tflite`` (``quantize``) and its record, the JSON of
``verify --json``, ``export.json`` (``export-c``) and the JSON of ``mcu-test --json``; files made
from another model are ignored, with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenet_edge.errors import LenetEdgeError
from lenet_edge.fsutil import sha256_file
from lenet_edge.interpreters import TfliteModel, read_tflite

MAX_JSON_BYTES = 20 << 20  #: larger JSON files in the run directory are not inspected


@dataclass
class Found:
    """The artifacts of a run directory, matched to its int8 model."""

    run_dir: Path
    keras: Path | None = None
    train: dict[str, Any] | None = None
    tflite: Path | None = None
    model: TfliteModel | None = None
    quant: tuple[Path, dict[str, Any]] | None = None
    verify: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    verify_used: tuple[Path, dict[str, Any]] | None = None  # the one the page shows
    #: the verification the report ran itself instead, and where it will be saved (None: not)
    verify_ran: tuple[Path | None, dict[str, Any]] | None = None
    exports: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    mcu: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def boards(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every board measured by mcu-test, one entry per board and build (C path, flags):
        when several files measured the same, the one that checked the most images."""
        best: dict[tuple[Any, ...], tuple[Path, dict[str, Any]]] = {}
        for path, doc in self.mcu:
            for b in doc.get("boards") or []:
                if not isinstance(b, dict):
                    continue
                key = (b.get("board"), b.get("dsp_path_enabled"), tuple(b.get("cflags") or ()))
                images = (b.get("check") or {}).get("images") or 0
                if key not in best or images > (
                    (best[key][1].get("check") or {}).get("images") or 0
                ):
                    best[key] = (path, b)
        return list(best.values())

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the run directory when inside it (stable across machines)."""
        p = Path(path)
        try:
            return p.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return str(p)


def _kind_of_json(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    if {"results", "pairwise", "golden_backend", "model"} <= doc.keys():
        return "verify"
    if {"scratch_size", "weight_bytes", "tflm_arena", "layers", "model"} <= doc.keys():
        return "export"
    if isinstance(doc.get("boards"), list) and "export_dir" in doc:
        return "mcu"
    if {"source_model", "quantization", "output"} <= doc.keys():
        return "quant"
    if {"history", "best_epoch"} <= doc.keys():
        return "train"
    return None


def _load_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _model_sha(doc: dict[str, Any], kind: str) -> str | None:
    if kind in ("verify", "export"):
        return (doc.get("model") or {}).get("sha256")
    if kind == "quant":
        return (doc.get("output") or {}).get("sha256")
    return None


def discover(run_dir: Path, tflite: Path | None = None) -> Found:
    """Find the run's Keras model, training record, int8 model and measurement files."""
    if not run_dir.exists():
        raise LenetEdgeError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise LenetEdgeError(f"{run_dir} is not a directory; give the run directory of `train`")
    found = Found(run_dir)

    keras = run_dir / "model.keras"
    if keras.is_file():
        found.keras = keras
    train_path = run_dir / "train.json"
    if train_path.is_file():
        doc = _load_json(train_path)
        if _kind_of_json(doc) == "train":
            found.train = doc
        else:
            found.notes.append(f"{found.rel(train_path)} is not a training record; ignored")

    docs: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted(run_dir.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(run_dir).parts):
            continue
        doc = _load_json(path)
        kind = _kind_of_json(doc)
        if kind is not None:
            docs.setdefault(kind, []).append((path, doc))

    found.tflite, found.model = _pick_tflite(found, tflite, docs.get("quant", []))
    if found.model is None:
        return found
    sha = found.model.sha256
    keras_sha = sha256_file(found.keras) if found.keras else None
    for kind in ("quant", "verify", "export"):
        for path, doc in docs.get(kind, []):
            if _model_sha(doc, kind) != sha:
                found.notes.append(
                    f"{found.rel(path)} ({kind}) was made from another model "
                    f"(SHA-256 {str(_model_sha(doc, kind))[:12]}), not "
                    f"{found.rel(found.model.source)}; ignored"
                )
            elif kind == "quant":
                found.quant = found.quant or (path, doc)
            elif kind == "verify":
                found.verify.append((path, doc))
            else:
                found.exports.append((path, doc))
    if found.quant and keras_sha:
        source = (found.quant[1].get("source_model") or {}).get("sha256")
        if source and source != keras_sha:
            found.notes.append(
                f"{found.rel(found.model.source)} was quantized from another model.keras "
                f"(SHA-256 {source[:12]}); float and int8 figures compare different models"
            )
    for path, doc in docs.get("mcu", []):
        export_dir = Path(str(doc.get("export_dir", "")))
        export_sha = None
        for cand in (export_dir, run_dir / export_dir.name):
            ej = _load_json(cand / "export.json") if export_dir.name else None
            if isinstance(ej, dict) and _kind_of_json(ej) == "export":
                export_sha = _model_sha(ej, "export")
                break
        if export_sha == sha:
            found.mcu.append((path, doc))
        elif export_sha is None:
            found.notes.append(
                f"{found.rel(path)} (mcu-test): its export directory {export_dir} is gone, so "
                "which model it measured is unknown; ignored"
            )
        else:
            found.notes.append(
                f"{found.rel(path)} (mcu-test) measured another model (SHA-256 "
                f"{export_sha[:12]}); ignored"
            )
    return found


def _pick_tflite(
    found: Found, explicit: Path | None, quants: list[tuple[Path, dict[str, Any]]]
) -> tuple[Path | None, TfliteModel | None]:
    if explicit is not None:
        model = read_tflite(explicit)
        if model.kind != "int8":
            raise LenetEdgeError(
                f"{explicit} is a {model.kind} model; the report needs the int8 .tflite "
                "from `lenet-edge quantize`"
            )
        return explicit, model
    by_sha: dict[str, tuple[Path, TfliteModel]] = {}
    for path in sorted(found.run_dir.rglob("*.tflite"), key=lambda p: (len(p.parts), str(p))):
        if any(part.startswith(".") for part in path.relative_to(found.run_dir).parts):
            continue
        try:
            model = read_tflite(path)
        except LenetEdgeError as exc:
            found.notes.append(f"{found.rel(path)}: {exc}; ignored")
            continue
        if model.kind != "int8":
            found.notes.append(f"{found.rel(path)} is a {model.kind} model, not int8; ignored")
            continue
        by_sha.setdefault(model.sha256, (path, model))
    if len(by_sha) > 1:
        keras_sha = sha256_file(found.keras) if found.keras else None
        from_this = {
            (q.get("output") or {}).get("sha256")
            for _, q in quants
            if (q.get("source_model") or {}).get("sha256") == keras_sha
        }
        mine = {s: v for s, v in by_sha.items() if s in from_this}
        if len(mine) == 1:
            by_sha = mine
        else:
            names = ", ".join(found.rel(p) for p, _ in by_sha.values())
            raise LenetEdgeError(
                f"{found.run_dir} holds several int8 models ({names}); name one after the run "
                f"directory: lenet-edge report {found.run_dir} MODEL (formerly --model)"
            )
    if not by_sha:
        return None, None
    path, model = next(iter(by_sha.values()))
    return path, model


def quantize_cmd(found: Found) -> str:
    """The command that makes the run's int8 model."""
    r = found.run_dir.as_posix()
    return f"lenet-edge quantize {r}/model.keras --out {r}/model_int8.tflite"


def export_cmd(found: Found) -> str:
    """The command that exports the run's int8 model as C."""
    return f"lenet-edge export-c {tflite_rel(found)} --out {found.run_dir.as_posix()}/c"


def tflite_rel(found: Found) -> str:
    """The int8 model's path as the commands shown on the page name it."""
    if found.tflite is None:
        return f"{found.run_dir.as_posix()}/model_int8.tflite"
    return (found.run_dir / found.rel(found.tflite)).as_posix()


def board_label(b: dict[str, Any]) -> str:
    return str(b.get("board"))


def c_path(b: dict[str, Any]) -> str:
    """Which C path a board build used."""
    return "DSP" if b.get("dsp_path_enabled") else "portable"
