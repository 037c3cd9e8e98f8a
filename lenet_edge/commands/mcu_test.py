"""``lenet-edge mcu-test DIR --board BOARD``: run the exported C on emulated Cortex-M boards."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from firmware_export.exportdir import export_changes, summarize_changes
from firmware_export.mcu.boards import board_names
from firmware_export.mcu.cycles import LABEL as CYCLES_LABEL
from firmware_export.mcu.cycles import milliseconds_text
from lenet_edge.commands._common import (
    FiniteFloat,
    check_json_output,
    count,
    data_dir_option,
    json_option,
    json_to_stdout,
    quiet_option,
    write_json,
)

#: The boards, in the order `--board all` runs them: the board packages of
#: firmware_export/boards/<board>/ (firmware_export.mcu.board_names, the one list).
BOARDS = tuple(board_names())


#: The MNIST test images, the most `--images` can embed.
TEST_IMAGES = 10000


class ImagesParam(click.ParamType):
    """A positive image count (at most the 10,000 test images), ``fit`` or ``all``."""

    name = "N|fit|all"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | str:
        if isinstance(value, int):
            n = value
        else:
            text = str(value).strip().lower()
            if text in ("fit", "all"):
                return text
            try:
                n = int(text)
            except ValueError:
                self.fail(f"{value!r} is not a positive number, 'fit' or 'all'", param, ctx)
        if n < 1:
            self.fail(f"{value!r} must be at least 1", param, ctx)
        if n > TEST_IMAGES:
            self.fail(
                f"{n} is more than the {TEST_IMAGES:,} MNIST test images there are "
                "('all' streams every one of them)",
                param,
                ctx,
            )
        return n


class Expected:
    """Expected int8 outputs of the first N MNIST test images from the TFLM interpreter (the
    golden reference, ``firmware_export.export.reference_outputs``), computed on demand and
    reused across boards."""

    def __init__(self, model_bytes: bytes, x_test: np.ndarray, quiet: bool) -> None:
        from firmware_export.errors import FirmwareExportError
        from firmware_export.plan import build_plan
        from firmware_export.reader import load_graph

        self.model_bytes = model_bytes
        self.plan = build_plan(load_graph(model_bytes))
        self.x_test = x_test
        self.quiet = quiet
        if self.plan.model_input is not None:
            raise FirmwareExportError(
                "model.tflite in the export does not take one per-tensor "
                "int8 input; re-run export-c on an int8 model"
            )
        self.scale = np.float32(self.plan.input.scale)
        self.zero_point = int(self.plan.input.zero_point)
        self.size = int(self.plan.input.shape[1])
        self.outputs = np.zeros((0, self.plan.output.size), np.int8)

    def quantized_inputs(self, raw: np.ndarray) -> np.ndarray:
        """The one preprocessing, then the one input quantization (as the C table)."""
        from firmware_export.mnist import quantize_images
        from lenet_edge import data

        x = data.preprocess(raw, size=self.size)
        return quantize_images(x, float(self.scale), self.zero_point)

    def __call__(self, n: int) -> np.ndarray:
        from firmware_export.export import reference_outputs

        have = len(self.outputs)
        if n > have:
            if not self.quiet and n - have > 500:
                click.echo(
                    f"computing expected outputs with the TFLM interpreter for {n - have} images",
                    err=True,
                )
            x = self.quantized_inputs(self.x_test[have:n])
            more = reference_outputs(self.model_bytes, self.plan, x)
            self.outputs = np.concatenate([self.outputs, more])
        return self.outputs[:n]


@contextlib.contextmanager
def _build_root(build_dir: str | None) -> Iterator[Path]:
    if build_dir is not None:
        path = Path(build_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="lenet-edge-mcu-") as tmp:
        yield Path(tmp)


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}K"


def _print_reports(reports: list[dict[str, Any]]) -> None:
    head = (
        f"{'board':<17} {'core':<11} {'mode':<7} {'images':>6} {'bad':>4} "
        f"{'flash lib/harn/vec':>20} {'RAM static':>10} {'stack':>6} {'peak RAM':>9} "
        f"{'instr/inf':>10} {'instr/MAC':>9} {'qemu s':>7}"
    )
    click.echo(head)
    click.echo("-" * len(head))
    for r in reports:
        mem, chk, ins = r["memory"], r["check"], r.get("instructions") or {}
        flash = mem["flash"]
        split = (
            f"{_kb(flash['library'])}/{_kb(flash['harness'] + flash['runtime'])}/"
            f"{_kb(flash['test_vectors'])}"
        )
        per_mac = ins.get("per_mac")
        click.echo(
            f"{r['board']:<17} {r['core']:<11} {r['mode']:<7} {chk['images']:>6} "
            f"{chk['mismatched_images']:>4} {split:>20} {mem['ram']['static']:>10} "
            f"{mem['stack']['high_water']:>6} {mem['peak_ram']:>9} "
            f"{ins.get('per_inference', '-'):>10} "
            f"{(f'{per_mac:.2f}' if per_mac is not None else '-'):>9} {r['qemu_seconds']:>7.2f}"
        )
    for r in reports:
        if "on_mcu_accuracy" in r:
            click.echo(
                f"{r['board']}: top-1 accuracy of the outputs computed on the core: "
                f"{100 * r['on_mcu_accuracy']:.2f}% over {r['check']['images']} test images"
            )
    for r in reports:
        ins = r.get("instructions")
        if not ins:
            continue
        click.echo(
            f"\n{r['board']}: instructions per inference by function "
            f"({ins['per_inference']} total, quantize {ins['quantize']})"
        )
        for name, n in ins["per_function"].items():
            share = 100.0 * n / ins["per_inference"] if ins["per_inference"] else 0.0
            click.echo(f"  {name:<40} {n:>10} {share:6.1f}%")
        if ins.get("per_layer"):
            click.echo("  by layer (the calls made by the infer function, export.json order):")
        for layer in ins.get("per_layer") or []:
            per_mac = f"{layer['per_mac']:.2f}/MAC" if layer["per_mac"] is not None else ""
            what = f"{layer['name']} ({layer['kernel']})"
            click.echo(f"    {what:<38} {layer['instructions']:>10} {per_mac:>10}")
    for r in reports:
        _print_cycles(r)


def _print_cycles(r: dict[str, Any]) -> None:
    """The cycle estimate of one board, labelled as such (QEMU counts instructions only)."""
    cyc = r.get("cycles")
    if not cyc:
        return
    if not cyc["modelled"]:
        click.echo(f"\n{r['board']}: cycles {CYCLES_LABEL}: not modelled ({cyc['reason']})")
        return
    low, high = cyc["per_inference_range"]
    spread = f" (range {low} to {high})" if low != high else ""
    ms = milliseconds_text(cyc["ms"])
    per_mac = f", {cyc['per_mac']:.2f}/MAC" if cyc["per_mac"] is not None else ""
    click.echo(
        f"\n{r['board']}: cycles per inference {CYCLES_LABEL} ({cyc['model']['core']} timing "
        f"model, zero wait states; docs/performance.md): {cyc['per_inference']}"
        f"{spread}{per_mac}; {ms}"
    )
    for layer in cyc.get("per_layer") or []:
        per_mac = f"{layer['per_mac']:.2f}/MAC" if layer["per_mac"] is not None else ""
        what = f"{layer['name']} ({layer['kernel']})"
        click.echo(f"    {what:<38} {layer['cycles']:>10} {per_mac:>10}")


def _check_export_model(model_path: Path, meta: dict[str, Any]) -> None:
    """The export's model.tflite must be the one export-c wrote (its SHA-256 is in
    export.json) and readable: TFLM, which computes the expected outputs, trusts it blindly."""
    from firmware_export.errors import FirmwareExportError
    from firmware_export.reader import load_graph
    from lenet_edge.fsutil import sha256_bytes

    data = model_path.read_bytes()
    want = (meta.get("files") or {}).get("model.tflite") if isinstance(meta, dict) else None
    if want is not None and sha256_bytes(data) != want:
        raise FirmwareExportError(
            f"{model_path} does not match the SHA-256 in export.json (changed after the "
            "export?); re-run `lenet-edge export-c`"
        )
    try:
        load_graph(data)
    except FirmwareExportError as exc:
        raise FirmwareExportError(f"{model_path}: {exc}") from None


@click.command("mcu-test")
@click.argument("export_dir", metavar="DIR", type=click.Path(path_type=str))
@click.option(
    "--board",
    "board",
    required=True,
    type=click.Choice([*BOARDS, "all"]),
    help="Emulated board, or all four.",
)
@click.option(
    "--images",
    type=ImagesParam(),
    metavar="N|fit|all",
    default="fit",
    show_default=True,
    help="Embedded test vectors: a number, or 'fit' for as many as the board's flash "
    "holds; 'all' streams the 10,000 test images through semihosting instead.",
)
@click.option(
    "--count-images",
    type=count(0, 10000),
    default=1,
    show_default=True,
    help="Inferences to count instructions over (exact QEMU trace); 0 skips it.",
)
@click.option(
    "--no-dsp",
    is_flag=True,
    help="Build the portable C path on every core: defines <PREFIX>_NO_DSP and "
    "undefines __ARM_FEATURE_DSP.",
)
@click.option(
    "--stack-size",
    type=count(256, 1 << 24),
    default=None,
    show_default="the board's",
    help="Bytes of stack to reserve.",
)
@click.option(
    "--cflag",
    "cflags",
    multiple=True,
    metavar="FLAG",
    help="Extra compiler flag for every C file, after the defaults (the export's -O2 or -Os, "
    "...); repeatable, "
    "e.g. --cflag=-O3.",
)
@click.option(
    "--timeout",
    type=FiniteFloat(min=1, max=86400),
    default=900.0,
    show_default=True,
    help="Seconds allowed per QEMU run.",
)
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    show_default="a temporary directory",
    help="Keep the build products here.",
)
@click.option(
    "--allow-modified",
    is_flag=True,
    help="Test an export whose files differ from export.json (hand-edited sources): the "
    "result is reported as modified sources, never as the export.",
)
@json_option("Also write the report as JSON to FILE.")
@data_dir_option
@quiet_option
def command(
    export_dir: str,
    board: str,
    images: int | str,
    count_images: int,
    no_dsp: bool,
    stack_size: int | None,
    cflags: tuple[str, ...],
    timeout: float,
    build_dir: str | None,
    json_out: Path | None,
    allow_modified: bool,
    data_dir: str | None,
    quiet: bool,
) -> int:
    """Build DIR/standalone (from `lenet-edge export-c`) for a Cortex-M board, run it under
    qemu-system-arm with semihosting and check every output byte against TFLM.

    Reports flash and RAM (library vs harness), the measured stack high-water mark, peak RAM
    and the exact instructions per inference (total, per function, per MAC). Exits 0 only
    when every output of every board matches.
    """
    from firmware_export import mcu
    from lenet_edge import data

    export = mcu.read_export(export_dir)
    # --json is never one of the files under test (export.json, the sources, the model).
    export_files = [export.directory / f for f in export.meta.get("files", {})]
    check_json_output(json_out, export.directory / "export.json", *export_files)
    tool = mcu.find_toolchain()
    names = list(BOARDS) if board == "all" else [board]
    boards = [mcu.load_board(n) for n in names]
    _check_export_model(export.model_path, export.meta)
    changes = export_changes(export.directory, export.meta)
    if changes and not allow_modified:
        raise mcu.McuError(
            f"{export_dir} is not the export that export-c wrote "
            f"({summarize_changes(changes)}; SHA-256 from "
            "export.json); re-run `lenet-edge export-c`, or test the edited sources knowingly "
            "with --allow-modified"
        )
    if changes:
        click.echo(
            f"warning: testing modified sources ({len(changes)} files differ from "
            "export.json); the results describe them, not the export",
            err=True,
        )
    mnist = data.load(data_dir)
    expected = Expected(export.model_path.read_bytes(), mnist.x_test, quiet)
    request = mcu.BoardRequest(
        images=images,
        count_images=count_images,
        dsp=not no_dsp,
        stack_size=stack_size,
        timeout=timeout,
        extra_cflags=tuple(cflags),
    )

    def log(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    reports = []
    with _build_root(build_dir) as root:
        for b in boards:
            rep = mcu.run_board(
                export,
                b,
                tool,
                root / b.name,
                mnist.x_test,
                expected,
                request,
                log=log,
                labels=mnist.y_test,
            )
            if build_dir is None:
                rep.pop("elf", None)
            reports.append(rep)
    result = {
        "export_dir": str(Path(export_dir).resolve()),
        "prefix": export.prefix,
        "macs": export.macs(),
        "passed": all(r["passed"] for r in reports),
        "boards": reports,
        # Hand-edited sources are never reported as the export (readers such as the report
        # check this): the list is empty only when every file matched export.json.
        "modified_files": changes,
    }
    if not json_to_stdout(json_out):
        _print_reports(reports)
    if json_out is not None:
        write_json(json_out, result)
    failed = [r for r in reports if not r["passed"]]
    if failed:
        from lenet_edge.errors import GateError

        raise GateError(
            "outputs differ from TFLM on "
            + "; ".join(
                f"{r['board']} ({r['check']['mismatched_images']} of {r['check']['images']} "
                f"images, {r['check']['mismatched_bytes']} bytes; first: image "
                f"{r['check']['first_mismatch']})"
                for r in failed
            )
        )
    if not json_to_stdout(json_out):
        what = " (modified sources, not the export)" if changes else ""
        click.echo(f"all outputs match on {', '.join(names)}{what}")
    return 0
