"""The whole report: discover the run's files, measure what is missing, render the page, and
only then write it (and the verification it ran, when that may be saved)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenet_edge.errors import LenetEdgeError
from lenet_edge.fsutil import atomic_write_json, atomic_write_text
from lenet_edge.interpreters import sniff_model_file
from lenet_edge.report import sections
from lenet_edge.report.discover import Found, discover, quantize_cmd
from lenet_edge.report.measure import Say, layer_sqnr, matching_verify, misclassified, run_verify
from lenet_edge.report.render import count, db, kib, missing, pct, render_page

REPORT_NAME = "report.html"
VERIFY_NAME = "verify.json"
DEFAULT_SQNR_IMAGES = 500


@dataclass
class Options:
    """What to evaluate."""

    limit: int | None = None  # first N test images (None: all 10,000)
    sqnr_images: int = DEFAULT_SQNR_IMAGES
    data_dir: str | None = None
    quiet: bool = False


@dataclass
class Report:
    """The rendered page and the figures it shows (for the terminal summary and tests)."""

    html: str
    facts: dict[str, Any]
    verify_written: Path | None = None
    #: the verification the report ran, and where it may be saved once the page is written
    verify_to_save: tuple[Path, dict[str, Any]] | None = None


def _say(quiet: bool) -> Say:
    def say(msg: str) -> None:
        if not quiet:
            print(f"report: {msg}", file=sys.stderr, flush=True)

    return say


def verify_name(n: int, limited: bool) -> str:
    """The file name under which the report saves a verification of ``n`` test images: a
    smoke run's (``--limit``) says it is partial, so it never takes the place of a full one."""
    return f"verify-limit-{n}.json" if limited else VERIFY_NAME


def verify_target(run_dir: Path, n: int, limited: bool) -> tuple[Path | None, str | None]:
    """Where the verification the report ran may be saved, or why it may not: an existing
    file is never overwritten (the report re-runs the verification only when none of the run's
    verify JSONs matches, so an existing one is stale for this page)."""
    path = run_dir / verify_name(n, limited)
    if path.exists() or path.is_symlink():
        return None, (
            f"{path.name} in the run directory is not a verification of this model on "
            f"{n:,} test images with every host backend; it is left as it is, and the "
            "verification run for this page is not saved"
        )
    return path, None


def summary(facts: dict[str, Any]) -> list[list[str]]:
    """The rows of the "at a glance" table."""
    rows = []
    if "float_accuracy" in facts:
        rows.append(["float accuracy (Keras)", pct(facts["float_accuracy"])])
    if "int8_accuracy" in facts:
        rows.append([f"int8 accuracy ({facts['int8_backend']})", pct(facts["int8_accuracy"])])
    rows.append(["test images", count(facts["images"])])
    if "tflite_bytes" in facts:
        rows.append([".tflite size", kib(facts["tflite_bytes"])])
    if "tflm_arena" in facts:
        rows.append(["TFLM arena (host-measured)", kib(facts["tflm_arena"])])
    if facts.get("standalone_weight_bytes") is not None:
        rows.append(["standalone weights", kib(facts["standalone_weight_bytes"])])
        rows.append(["standalone scratch", kib(facts.get("scratch_size"))])
    if facts.get("peak_ram_stm32vldiscovery") is not None:
        rows.append(["peak RAM on stm32vldiscovery", kib(facts["peak_ram_stm32vldiscovery"])])
    if facts.get("instructions_m4") is not None:
        rows.append(["instructions per inference, Cortex-M4", count(facts["instructions_m4"])])
    sqnr_db = {k: v for k, v in (facts.get("sqnr_db") or {}).items() if k != "input"}
    if sqnr_db:
        worst = min(sqnr_db, key=lambda k: sqnr_db[k])
        rows.append(["lowest per-layer SQNR", f"{db(sqnr_db[worst])} dB ({worst})"])
    return rows


def build_report(found: Found, options: Options) -> Report:
    """Measure what is missing and render the HTML page; writes nothing."""
    from lenet_edge import data

    say = _say(options.quiet)
    mnist = data.load(options.data_dir)
    n = len(mnist.x_test) if options.limit is None else min(options.limit, len(mnist.x_test))
    images, labels = mnist.x_test[:n], mnist.y_test[:n]
    facts: dict[str, Any] = {"images": n, "run_dir": found.run_dir.name}

    keras_model = None
    float_ref = None
    if found.keras is not None:
        from lenet_edge.model import load_keras_model
        from lenet_edge.verify import keras_reference

        say(f"float predictions of {found.rel(found.keras)} on {n:,} test images")
        keras_model = load_keras_model(found.keras)
        float_ref = keras_reference(found.keras, images, model=keras_model)

    verify_report = None
    to_save = None
    if found.model is not None:
        from lenet_edge.verify import resolve_backends

        backends, skipped = resolve_backends(["all"])
        match = matching_verify(found, n, backends)
        if match is not None:
            verify_path, verify_report = match
            say(f"reusing {found.rel(verify_path)} (verify, {n:,} images)")
            found.verify_used = (verify_path, verify_report)
            facts["verify_json"] = found.rel(verify_path)
        else:
            target, why_not = verify_target(found.run_dir, n, options.limit is not None)
            if why_not is not None:
                found.notes.append(why_not)
                print(f"report: note: {why_not}", file=sys.stderr, flush=True)
            verify_report = run_verify(
                found,
                images,
                labels,
                float_ref,
                limited=options.limit is not None,
                quiet=options.quiet,
                json_out=target,
                say=say,
                names=backends,
                skipped=skipped,
            )
            found.verify_ran = (target, verify_report)
            if target is not None:
                to_save = (target, verify_report)
                facts["verify_json"] = found.rel(target)

    golden = None
    if verify_report is not None:
        results = verify_report["results"]
        golden = verify_report["golden_backend"]
        golden = golden if golden in results else next(iter(results))
        facts["int8_backend"] = golden
        facts["int8_accuracy"] = results[golden]["accuracy"]
    float_metrics = None
    if float_ref is not None:
        from lenet_edge.verify import classification_metrics

        float_metrics = classification_metrics(float_ref.pred, labels)
        facts["float_accuracy"] = float_metrics["accuracy"]

    mis = None
    if verify_report is not None and golden is not None and found.model is not None:
        mis = misclassified(found.model, verify_report, golden, images, labels, float_ref, say)
    if keras_model is not None and found.model is not None:
        k = min(options.sqnr_images, n)
        say(f"per-layer quantization error on {k} test images")
        rows = layer_sqnr(keras_model, found.model, images[:k], quiet=options.quiet)
        facts["sqnr_db"] = {r["layer"]: r["sqnr_db"] for r in rows}
        sqnr = sections.sqnr(rows, k)
    else:
        what = "the int8 model" if found.model is None else "model.keras"
        cmd = quantize_cmd(found) if found.model is None else None
        sqnr = {
            "missing": missing(
                f"Per-layer quantization error not available: {what} is missing", cmd
            )
        }
    page_sections = [
        sections.section("training", "Training", sections.training(found)),
        sections.section(
            "accuracy",
            "Accuracy: float and int8",
            sections.accuracy(found, verify_report, golden, float_metrics, n),
        ),
        sections.section(
            "misclassified",
            "Misclassified test digits (int8)",
            sections.misclassified(found, mis, golden, images, float_ref is not None),
        ),
        sections.section("sqnr", "Per-layer quantization error", sqnr),
        sections.section(
            "size", "Size and memory", sections.size(found, keras_model, verify_report, facts)
        ),
        sections.section("fidelity", "Fidelity matrix", sections.fidelity(found, verify_report)),
        sections.section("try_firmware", "Try the firmware", sections.try_firmware(found)),
        sections.section("provenance", "Where the figures come from", sections.provenance(found)),
    ]
    name = found.run_dir.resolve().name or str(found.run_dir)
    page = render_page({"name": name, "summary": summary(facts), "sections": page_sections})
    return Report(page, facts, verify_to_save=to_save)


def write_report(
    run_dir: Path,
    out: Path | None = None,
    tflite: Path | None = None,
    options: Options | None = None,
) -> tuple[Path, Report]:
    """Discover, measure and render the report, then write it atomically and, after it, the
    verification it ran when that may be saved; return the page's path."""
    from lenet_edge.fsutil import check_output_file

    opts = options or Options()
    target = out if out is not None else run_dir / REPORT_NAME
    check_output_file(target)
    if tflite is not None and sniff_model_file(tflite) != "tflite":
        raise LenetEdgeError(f"{tflite}: not a .tflite model")
    found = discover(run_dir, tflite)
    # The page never replaces what it reports on, however the path is spelled.
    check_output_file(target, _inputs(found, run_dir, tflite))
    if found.keras is None and found.model is None:
        raise LenetEdgeError(
            f"{run_dir}: no model.keras and no int8 .tflite; give the run directory of "
            "`lenet-edge train`"
        )
    report = build_report(found, opts)
    try:
        atomic_write_text(target, report.html)
    except OSError as exc:
        raise LenetEdgeError(
            f"cannot write {target}: {exc.strerror or exc}; nothing was written"
        ) from None
    if report.verify_to_save is not None:
        path, doc = report.verify_to_save
        if path.resolve() != target.resolve() and not path.exists():
            try:
                atomic_write_json(path, doc)
            except OSError as exc:
                raise LenetEdgeError(
                    f"cannot write {path}: {exc.strerror or exc}; the report was written to "
                    f"{target}, the verification it ran was not saved"
                ) from None
            report.verify_written = path
            _say(opts.quiet)(f"verification saved to {path} (reused by the next report)")
    return target, report


def _inputs(found: Found, run_dir: Path, tflite: Path | None) -> list[Path | None]:
    """Every file the page is made from: the output may be none of them."""
    paths: list[Path | None] = [found.keras, run_dir / "train.json", found.tflite, tflite]
    if found.quant is not None:
        paths.append(found.quant[0])
    for group in (found.verify, found.exports, found.mcu):
        paths.extend(path for path, _ in group)
    return paths
