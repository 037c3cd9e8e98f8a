"""The data of each section of the page: plain strings, numbers and images, no markup; each
section's template (``templates/sections/ID.html.j2``) lays it out."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from firmware_export.exportdir import package_folders
from lenet_edge import __version__
from lenet_edge.fsutil import json_bytes, sha256_file
from lenet_edge.report import plots
from lenet_edge.report.discover import (
    Found,
    board_label,
    c_path,
    export_cmd,
    quantize_cmd,
    tflite_rel,
)
from lenet_edge.report.firmware import try_firmware as try_firmware
from lenet_edge.report.measure import Misclassified, in_scope, weight_table
from lenet_edge.report.render import count, db, img, kib, missing, pct

LECUN_ERROR = 0.0095  #: LeCun et al. 1998, LeNet-5 without distortions: 0.95 % test error


def section(sid: str, title: str, data: dict[str, Any]) -> dict[str, Any]:
    """One section of the page, rendered by ``templates/sections/{sid}.html.j2``."""
    return {"id": sid, "title": title, "template": f"sections/{sid}.html.j2", **data}


def training(found: Found) -> dict[str, Any]:
    t = found.train
    if t is None:
        return {
            "missing": missing(
                "Training curves not available: no train.json in the run directory",
                f"lenet-edge train --out {found.run_dir.as_posix()}",
            )
        }
    png = plots.plot_training(t.get("history") or {}, t.get("best_epoch"))
    m = t.get("model") or {}
    tr = t.get("train") or {}
    variant = (
        f"{m.get('variant')} ({m.get('activation')}, {m.get('pooling')} pooling, {m.get('c3')} C3)"
    )
    augment = "on" if tr.get("augment") else "off"
    rows = [
        ["model", variant],
        ["parameters / MACs", f"{count(t.get('parameters'))} / {count(t.get('macs'))}"],
        ["training images", f"{count(t.get('train_images'))} (augmentation {augment})"],
        ["epochs run / best epoch", f"{t.get('epochs_run')} / {t.get('best_epoch')}"],
        ["validation accuracy (best epoch)", pct(t.get("val_accuracy"))],
        ["test accuracy (float, all 10,000)", pct(t.get("test_accuracy"))],
    ]
    if t.get("interrupted"):
        rows.append(["note", "training was interrupted; the best epoch so far was kept"])
    return {"missing": None, "curves": img(png, "training curves"), "rows": rows}


def accuracy(
    found: Found,
    verify_report: dict[str, Any] | None,
    golden: str | None,
    float_metrics: dict[str, Any] | None,
    n: int,
) -> dict[str, Any]:
    data: dict[str, Any] = {"subset": None if n == 10000 else f"{n:,}", "n": f"{n:,}"}
    if verify_report is None or golden is None:
        data["missing"] = missing(
            "int8 confusion matrix and per-class accuracy not available: no int8 model",
            quantize_cmd(found),
        )
        data["float_accuracy"] = pct(float_metrics["accuracy"]) if float_metrics else None
        return data
    r = verify_report["results"][golden]
    cm_png = plots.plot_confusion(r["confusion_matrix"], f"int8 confusion matrix ({golden})")
    float_pc = float_metrics["per_class_accuracy"] if float_metrics else None
    pc_png = plots.plot_per_class(float_pc, r["per_class_accuracy"], f"int8 ({golden})")
    rows: list[list[Any]] = []
    for c in range(len(r["per_class_accuracy"])):
        fa = float_pc[c] if float_pc else None
        ia = r["per_class_accuracy"][c]
        delta = "–" if fa is None else f"{100 * (ia - fa):+.2f}"
        rows.append([str(c), count(r["per_class_support"][c]), pct(fa), pct(ia), delta])
    total_f = float_metrics["accuracy"] if float_metrics else None
    delta_total = "–" if total_f is None else f"{100 * (r['accuracy'] - total_f):+.2f}"
    rows.append([{"b": "all"}, count(r["images"]), pct(total_f), pct(r["accuracy"]), delta_total])
    lecun = (
        f"LeCun et al. (1998) report {100 * LECUN_ERROR:.2f}% test error for LeNet-5 without "
        f"distortions; this int8 model: {100 * (1 - r['accuracy']):.2f}%"
        + (f", float {100 * (1 - total_f):.2f}%" if total_f is not None else "")
        + "."
    )
    data.update(
        missing=None,
        golden=golden,
        confusion=img(cm_png, "int8 confusion matrix"),
        per_class=img(pc_png, "per-class accuracy"),
        head=["class", "images", "float (Keras)", f"int8 ({golden})", "Δ pp"],
        rows=rows,
        lecun=lecun,
        missing_float=None
        if float_metrics is not None
        else missing("Float per-class accuracy not available: no model.keras in the run directory"),
    )
    return data


def misclassified(
    found: Found, mis: Misclassified | None, golden: str | None, images: Any, has_float: bool
) -> dict[str, Any]:
    """``mis`` is None when nothing is misclassified; ``golden`` None when there is no int8
    model to evaluate; ``images`` are the test images evaluated."""
    if golden is None:
        return {
            "missing": missing(
                "Misclassified digits not available: no int8 model in the run directory",
                quantize_cmd(found),
            )
        }
    if mis is None:
        return {"missing": None, "grid": None}
    shown = len(mis.indices)
    png = plots.plot_misclassified(images[mis.indices], mis.true, mis.pred, mis.float_ok)
    return {
        "missing": None,
        "grid": img(png, "misclassified test digits"),
        "which": "All" if shown == mis.total else f"The first {shown} of",
        "total": f"{mis.total:,}",
        "golden": golden,
        "shown": shown,
        "float_right": sum(mis.float_ok) if has_float else None,
        "stale": mis.stale,
    }


def sqnr(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    table_rows = []
    for r in rows:
        gap = r["rounding_floor_db"] - r["sqnr_db"]
        table_rows.append(
            [
                {"b": r["layer"]},
                " + ".join(r["ops"]) or r["kind"],
                "×".join(str(d) for d in r["shape"]),
                f"{r['scale']:.6g} / {r['zero_point']}",
                db(r["sqnr_db"]),
                db(r["rounding_floor_db"]),
                "–" if not math.isfinite(gap) else f"{gap:.1f}",
                f"{r['mean_abs_err_lsb']:.2f}",
            ]
        )
    return {
        "missing": None,
        "images": f"{k:,}",
        "chart": img(plots.plot_sqnr(rows), "per-layer SQNR"),
        "rows": table_rows,
    }


def build_formats(found: Found) -> list[dict[str, str]]:
    """The build formats `lenet-edge package` added to each export of the run (CMake, Arduino,
    WebAssembly), recognised by their package.json; or, when an export has none, the command
    that adds them."""
    out = []
    for path, _ in found.exports:
        export_dir = path.parent
        folders = [export_dir / name for name in sorted(package_folders(export_dir))]
        if not folders:
            rel = found.rel(export_dir)
            out.append({"missing": f"lenet-edge package {rel} --format all", "path": rel})
        for folder in folders:
            inner = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "src")
            target = inner[0] if folder.name == "arduino" and len(inner) == 1 else folder
            out.append({"format": folder.name, "path": found.rel(target)})
    return out


def provenance(found: Found) -> dict[str, Any]:
    rows = []

    def add(what: str, path: Path | None, command: str | None = None) -> None:
        if path is None or not path.exists():
            return
        rows.append(
            [
                what,
                {"code": found.rel(path)},
                {"code": sha256_file(path)[:16]},
                {"code": command} if command else "",
            ]
        )

    add("Keras model", found.keras)
    add("training record", found.run_dir / "train.json" if found.train else None)
    if found.tflite is not None:
        add("int8 model", found.tflite, (found.quant[1].get("command") if found.quant else None))
    if found.quant:
        add("quantization record", found.quant[0])
    if found.verify_used is not None:
        path, doc = found.verify_used
        add("verification", path, doc.get("command"))
    if found.verify_ran is not None:
        target, doc = found.verify_ran
        command = doc.get("command")
        rows.append(
            [
                "verification",
                {"code": found.rel(target)} if target is not None else "not saved",
                {"code": hashlib.sha256(json_bytes(doc)).hexdigest()[:16]},
                {"code": command} if command else "",
            ]
        )
    for path, doc in found.exports:
        add("C export", path, doc.get("command"))
    for path, _ in found.mcu:
        add("MCU measurements", path)
    versions = (found.train or {}).get("versions") or {}
    return {
        "rows": rows,
        "packages": build_formats(found),
        "version": __version__,
        "command": f"lenet-edge report {found.run_dir.as_posix()}",
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        "notes": found.notes,
    }


def size(
    found: Found, keras_model: Any, verify_report: dict[str, Any] | None, facts: dict[str, Any]
) -> dict[str, Any]:
    """Sizes of the int8 model, per layer, TFLM's arena, the standalone engine and the boards;
    fills ``facts`` with the figures of the summary."""
    data: dict[str, Any] = {"model": None, "layers": None}
    model = found.model
    if model is None:
        data["no_model"] = missing("No int8 model in the run directory", quantize_cmd(found))
    else:
        weights = weight_table(model)
        w_bytes = sum(r["weights_bytes"] for r in weights)
        b_bytes = sum(r["bias_bytes"] for r in weights)
        facts["tflite_bytes"] = model.size
        rest = model.size - w_bytes - b_bytes
        data["model"] = [
            [f"{found.rel(model.source)} (whole flatbuffer)", count(model.size)],
            ["int8 weights", count(w_bytes)],
            ["int32 biases", count(b_bytes)],
            ["graph, quantization parameters, other constants", count(rest)],
        ]
    if keras_model is not None:
        from lenet_edge.model import layer_table

        per_op: dict[str, dict[str, Any]] = {}
        if model is not None:
            for w in weight_table(model):
                for layer in keras_model.layers:
                    if any(in_scope(layer.name, s) for s in w["scopes"]):
                        per_op[layer.name] = w
        rows = []
        for r in layer_table(keras_model):
            op_row = per_op.get(r.name)
            rows.append(
                [
                    r.name,
                    r.kind,
                    "×".join(map(str, r.output_shape)),
                    count(r.params),
                    count(r.macs),
                    count(op_row["weights_bytes"] + op_row["bias_bytes"]) if op_row else "–",
                ]
            )
        data["layers"] = rows
    data["arena"] = _arena(found, verify_report, facts)
    data["exports"] = _exports(found, facts)
    data.update(_boards(found, facts))
    return data


def _arena(
    found: Found, verify_report: dict[str, Any] | None, facts: dict[str, Any]
) -> dict[str, Any]:
    arena = (verify_report or {}).get("tflm_arena") or {}
    export_arena = None
    if found.exports:
        export_arena = found.exports[0][1].get("tflm_arena") or {}
    if not (arena.get("bytes") or export_arena):
        return {
            "rows": None,
            "missing": missing(
                "TFLM arena not measured", f"lenet-edge verify {tflite_rel(found)} --backend tflm"
            ),
        }
    rows = []
    if arena.get("bytes"):
        rows.append(["minimum arena (verify)", kib(arena["bytes"]), str(arena.get("note", ""))])
        facts["tflm_arena"] = arena["bytes"]
    if export_arena:
        rows.append(
            [
                "minimum arena (export-c)",
                kib(export_arena.get("measured_bytes")),
                str(export_arena.get("note", "")),
            ]
        )
        rows.append(
            [
                "kTensorArenaSize in the TFLM example",
                kib(export_arena.get("kTensorArenaSize")),
                f"measured + {count(export_arena.get('margin_bytes'))} B margin",
            ]
        )
    return {"rows": rows, "missing": None}


def _exports(found: Found, facts: dict[str, Any]) -> dict[str, Any]:
    if not found.exports:
        return {
            "missing": missing(
                "Not measured: no export.json in the run directory", export_cmd(found)
            ),
            "files": [],
        }
    files = []
    for path, ex in found.exports:
        wb = ex.get("weight_bytes") or {}
        prefix = str(ex.get("prefix", "lenet"))
        rows: list[list[Any]] = [
            ["weights and tables, total", kib(wb.get("total"))],
            *[
                [{"indent": True, "text": k}, count(v)]
                for k, v in sorted(wb.items())
                if k != "total" and isinstance(v, int)
            ],
            [
                {"code": f"{prefix.upper()}_SCRATCH_SIZE", "text": " (activations)"},
                kib(ex.get("scratch_size")),
            ],
            [
                "MACs per inference (engine / TFLM)",
                f"{count(ex.get('macs'))} / {count(ex.get('tflm_macs'))}",
            ],
            ["engine layers", ", ".join(f"{x.get('name')}" for x in ex.get("layers") or [])],
        ]
        facts.setdefault("scratch_size", ex.get("scratch_size"))
        facts.setdefault("standalone_weight_bytes", wb.get("total"))
        files.append({"path": found.rel(path), "rows": rows})
    return {"missing": None, "files": files}


def mcu_cmd(found: Found) -> str:
    """The command that measures the boards (exporting the C first when needed)."""
    export_dir = found.exports[0][0].parent.as_posix() if found.exports else f"{found.run_dir}/c"
    cmd = f"lenet-edge mcu-test {export_dir} --board all --json {found.run_dir.as_posix()}/mcu.json"
    return cmd if found.exports else f"{export_cmd(found)} && {cmd}"


def _boards(found: Found, facts: dict[str, Any]) -> dict[str, Any]:
    boards = found.boards()
    if not boards:
        return {
            "boards": None,
            "no_boards": missing(
                "Flash, RAM, stack and instruction counts not measured", mcu_cmd(found)
            ),
        }
    rows = []
    for _, b in boards:
        mem = b.get("memory") or {}
        fl, ram, st = mem.get("flash") or {}, mem.get("ram") or {}, mem.get("stack") or {}
        ins = b.get("instructions") or {}
        per_mac = ins.get("per_mac")
        rows.append(
            [
                board_label(b),
                str(b.get("core", "")),
                c_path(b),
                f"{count(fl.get('total'))} / {count(fl.get('size'))}",
                count(fl.get("library")),
                count(ram.get("static")),
                count(st.get("high_water")),
                count(mem.get("peak_ram")),
                count(mem.get("library_ram")),
                count(ins.get("per_inference")),
                "–" if per_mac is None else f"{per_mac:.2f}",
            ]
        )
        if b.get("board") == "stm32vldiscovery":
            facts.setdefault("peak_ram_stm32vldiscovery", mem.get("peak_ram"))
        if b.get("board") == "mps2-an386" and b.get("dsp_path_enabled"):
            facts.setdefault("instructions_m4", ins.get("per_inference"))
    data: dict[str, Any] = {
        "boards": rows,
        "memory": img(plots.plot_memory([b for _, b in boards]), "flash and RAM per board"),
        "per_layer": None,
    }
    layered = [(p, b) for p, b in boards if (b.get("instructions") or {}).get("per_layer")]
    if layered:
        names = [str(x.get("name")) for x in layered[0][1]["instructions"]["per_layer"]]
        head = ["layer", "MACs", *(f"{board_label(b)} ({c_path(b)})" for _, b in layered)]
        per_layer = []
        for k, name in enumerate(names):
            first = layered[0][1]["instructions"]["per_layer"][k]
            row = [f"{name} ({first.get('kernel')})", count(first.get("macs"))]
            for _, b in layered:
                layers = b["instructions"]["per_layer"]
                x = layers[k] if k < len(layers) else {}
                pm = x.get("per_mac")
                row.append(f"{count(x.get('instructions'))}" + (f" ({pm:.2f}/MAC)" if pm else ""))
            per_layer.append(row)
        data["per_layer"] = {
            "head": head,
            "rows": per_layer,
            "classes": ["", *["n"] * (len(head) - 1)],
        }
    return data


def fidelity(found: Found, verify_report: dict[str, Any] | None) -> dict[str, Any]:
    """The host interpreters side by side, their pairwise differences, and the boards."""
    if verify_report is None:
        return {"missing": missing("Not available: no int8 model", quantize_cmd(found))}
    # In the order the backends ran (``backends``, a list): a JSON file read back may hold
    # ``results`` with its keys sorted, and the page must not depend on which one it got.
    ran = [n for n in verify_report.get("backends") or [] if n in verify_report["results"]]
    results = {
        n: verify_report["results"][n]
        for n in ran + sorted(set(verify_report["results"]) - set(ran))
    }
    golden = verify_report.get("golden_backend")
    rows: list[list[Any]] = []
    workers: list[str] = []
    for name, r in results.items():
        vs = r.get("vs_reference") or {}
        mean_us = (r.get("latency") or {}).get("mean_us")
        rows.append(
            [
                {"b": name, "text": " (golden)" if name == golden else ""},
                count(r.get("images")),
                pct(r.get("accuracy")),
                pct(vs.get("top1_agreement")) if vs else "–",
                count(vs.get("disagreements")) if vs else "–",
                f"{mean_us:,.0f} µs" if isinstance(mean_us, int | float) else "–",
            ]
        )
        w = r.get("worker")
        if isinstance(w, dict):
            rss = w.get("worker_max_rss_kib")
            workers.append(
                f"{name} ran in a worker process under its own environment (tflite_runtime "
                f"{w.get('tflite_runtime')}, NumPy {w.get('numpy')})"
                + (f"; the worker's peak RSS was {rss / 1024:.0f} MiB" if rss else "")
            )
    ref = verify_report.get("reference")
    if ref:
        rows.append(
            [
                f"float reference ({ref.get('kind')})",
                count(ref.get("images")),
                pct(ref.get("accuracy")),
                "",
                "",
                "",
            ]
        )
    data: dict[str, Any] = {
        "missing": None,
        "hosts": rows,
        "skipped": [
            [str(k), str(v)] for k, v in (verify_report.get("skipped_backends") or {}).items()
        ],
        "workers": workers,
        "matrix": None,
    }
    names = list(results)
    if len(names) > 1:
        data["matrix"] = {
            "names": names,
            "rows": _pairwise(names, verify_report.get("pairwise") or []),
            "images": count(verify_report["dataset"]["images"]),
        }
    boards = [b for _, b in found.boards()]
    if not boards:
        data["boards"] = None
        data["no_boards"] = missing(
            "Not measured: no mcu-test JSON for this model in the run directory",
            f"lenet-edge mcu-test {found.run_dir.as_posix()}/c --board all --json "
            f"{found.run_dir.as_posix()}/mcu.json",
        )
        return data
    data["boards"] = []
    for b in boards:
        c = b.get("check") or {}
        ok = b.get("passed") and c.get("mismatched_images") == 0
        data["boards"].append(
            [
                board_label(b),
                str(b.get("core", "")),
                c_path(b),
                str(b.get("mode", "")),
                count(c.get("images")),
                count(c.get("mismatched_images")),
                "bit-exact" if ok else f"{count(c.get('mismatched_bytes'))} bytes differ",
            ]
        )
    return data


def _pairwise(names: list[str], pairwise: list[dict[str, Any]]) -> list[list[Any]]:
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for p in pairwise:
        cells[(p["a"], p["b"])] = cells[(p["b"], p["a"])] = p
    rows: list[list[Any]] = []
    for a in names:
        row: list[Any] = [{"b": a}]
        for b in names:
            cell = cells.get((a, b))
            if a == b:
                row.append("—")
            elif cell is None:
                row.append("–")
            elif cell["images_differ"] == 0:
                row.append("identical")
            else:
                size = (
                    f"max {cell['max_lsb']} LSB"
                    if cell.get("max_lsb") is not None
                    else f"max {cell['max_abs_diff']:.3g}"
                )
                top = f", top-1 differs on {cell['top1_differ']}" if cell["top1_differ"] else ""
                row.append(f"{count(cell['images_differ'])} images differ, {size}{top}")
        rows.append(row)
    return rows


#: Where a package writes the WebAssembly build inside an export directory.
