"""``lenet-edge report``: the HTML page of a run directory, its figures checked against
independent computations, its rendering in headless Chromium, and its use of export-c and
mcu-test results.

The run directory is the short-trained ``modern`` model of the fixtures with its int8 model;
the report evaluates the first 300 test images (``--limit``) to stay fast.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lenet_edge import data
from lenet_edge.cli import main
from lenet_edge.report import Options, write_report
from tests.support.browser import CHROMIUM_FLAGS
from tests.support.export_helpers import MCU_TOOLS, skip_unless

MODERN = {"variant": "modern"}
LIMIT = 300
SQNR_IMAGES = 100
PARTIAL_VERIFY = f"verify-limit-{LIMIT}.json"  #: where a --limit run saves its verification
#: After the page has loaded, count the images and those that decoded (naturalWidth > 0).
PROBE = (
    '<script>window.addEventListener("load", function () {'
    "var a = Array.prototype.slice.call(document.images);"
    'document.body.setAttribute("data-images", a.length);'
    'document.body.setAttribute("data-loaded", a.filter(function (i) {'
    "return i.complete && i.naturalWidth > 0; }).length); });</script>"
)


def _only_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _make_run(dest: Path, trained_model: Any, int8_model: Any) -> Path:
    src = trained_model(**MODERN)
    dest.mkdir(parents=True)
    for name in ("model.keras", "train.json"):
        shutil.copy(src / name, dest / name)
    shutil.copy(int8_model(**MODERN), dest / "model_int8.tflite")
    return dest


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, trained_model: Any, int8_model: Any) -> Path:
    """A run directory with model.keras, train.json and model_int8.tflite, and its report."""
    run_dir = _make_run(tmp_path_factory.mktemp("report") / "run", trained_model, int8_model)
    args = ["report", str(run_dir), "--limit", str(LIMIT), "--sqnr-images", str(SQNR_IMAGES)]
    assert main([*args, "-q"]) == 0
    return run_dir


def _images(page: str) -> list[bytes]:
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def _png_chunks(png: bytes) -> list[bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        crc = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])[0]
        assert zlib.crc32(png[pos + 4 : pos + 8 + length]) == crc
        kinds.append(kind)
        pos += 12 + length
    return kinds


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------


def test_report_is_self_contained_and_complete(run):
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for sid in ("training", "accuracy", "misclassified", "sqnr", "size", "fidelity"):
        assert f'<section id="{sid}">' in page
    # no external resource, no script, no timestamp-like metadata in the PNGs
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)
    assert "<script" not in page and "<link" not in page and "url(" not in page
    pngs = _images(page)
    assert len(pngs) == 5  # curves, confusion, per-class, misclassified, SQNR; no MCU plot
    for png in pngs:
        chunks = _png_chunks(png)
        assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(chunks), chunks
    # what is absent is said plainly, with the command that measures it
    assert "Not measured: no export.json" in page
    assert f"lenet-edge export-c {run.as_posix()}/model_int8.tflite --out {run.as_posix()}/c" in (
        page
    )
    assert "Flash, RAM, stack and instruction counts not measured" in page
    assert f"Only the first {LIMIT} test images" in page
    # the verification it ran is saved, under a name that says it is partial, and names its
    # command; a smoke run never writes verify.json
    assert not (run / "verify.json").exists()
    doc = json.loads((run / PARTIAL_VERIFY).read_text())
    assert doc["dataset"]["images"] == LIMIT and "tflm" in doc["results"]
    assert doc["command"].startswith("lenet-edge verify ") and "--limit 300" in doc["command"]


def test_accuracy_figures_match_independent_computations(run, mnist):
    """The float and int8 accuracies and the confusion matrix agree with direct runs."""
    from firmware_export.tflm import TflmModel
    from lenet_edge.model import load_keras_model
    from lenet_edge.verify import prepare_inputs

    x, y = mnist.x_test[:LIMIT], mnist.y_test[:LIMIT]
    keras_model = load_keras_model(str(run / "model.keras"))
    float_pred = keras_model.predict(data.preprocess(x), verbose=0).argmax(axis=1)
    tflm = TflmModel((run / "model_int8.tflite").read_bytes())
    from lenet_edge.interpreters import read_tflite

    tensor = read_tflite(run / "model_int8.tflite").input
    int8_pred = tflm.run(prepare_inputs(x, tensor)).reshape(LIMIT, -1).argmax(axis=1)
    page = (run / "report.html").read_text(encoding="utf-8")
    f_acc, i_acc = float(np.mean(float_pred == y)), float(np.mean(int8_pred == y))
    assert f'float accuracy (Keras)</td><td class="n">{100 * f_acc:.2f}%' in page
    assert f'int8 accuracy (tflm)</td><td class="n">{100 * i_acc:.2f}%' in page
    # per-class rows: class, images, float, int8
    for c in range(10):
        mask = y == c
        row = (
            f'<td>{c}</td><td class="n">{int(mask.sum()):,}</td>'
            f'<td class="n">{100 * np.mean(float_pred[mask] == c):.2f}%</td>'
            f'<td class="n">{100 * np.mean(int8_pred[mask] == c):.2f}%</td>'
        )
        assert row in page, c
    wrong = int(np.sum(int8_pred != y))
    assert f"{wrong:,} test images misclassified by the int8 model (tflm)" in page


def test_sqnr_per_layer_matches_retargeted_outputs(run, mnist):
    """Each layer's SQNR equals one computed without the report's machinery: the int8 graph
    re-targeted so that the layer's tensor is the graph output, run on LiteRT's reference
    kernels, against a Keras sub-model; the tensors are picked from the known op order."""
    import keras

    from lenet_edge.interpreters import LiteRTRunner, read_tflite
    from lenet_edge.model import load_keras_model
    from lenet_edge.report import discover, layer_sqnr
    from lenet_edge.verify import dequantize, prepare_inputs
    from tests.support.tflite_build import retarget_output

    model = read_tflite(run / "model_int8.tflite")
    assert model.op_names == [
        "CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE",
        "FULLY_CONNECTED", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX",
    ]  # fmt: skip
    op_of_layer = {"c1": 0, "s2": 1, "c3": 2, "s4": 3, "f5": 5, "f6": 6, "output": 8}
    keras_model = load_keras_model(str(run / "model.keras"))
    x = mnist.x_test[:SQNR_IMAGES]
    rows = {r["layer"]: r for r in layer_sqnr(keras_model, model, x)}
    assert list(rows) == ["input", *op_of_layer]
    x_in = prepare_inputs(x, model.input)
    probe = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in op_of_layer])
    floats = probe.predict(data.preprocess(x), verbose=0)
    for (name, op), f in zip(op_of_layer.items(), floats, strict=True):
        t = model.ops[op].outputs[0]
        out = LiteRTRunner(retarget_output(model.data, t), reference=True).run(x_in).outputs
        a = np.asarray(f, np.float64).reshape(len(x), -1)
        err = a - dequantize(out, model.tensors[t]).astype(np.float64).reshape(len(x), -1)
        expected = 10 * math.log10(np.sum(a**2) / np.sum(err**2))
        assert rows[name]["sqnr_db"] == pytest.approx(expected, abs=1e-6), name
        assert 25.0 < expected < 70.0, (name, expected)  # int8: tens of dB, not exact
        assert rows[name]["rounding_floor_db"] >= rows[name]["sqnr_db"] - 0.5, name
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<td><b>c3</b></td><td>CONV_2D</td><td>10×10×16</td>" in page
    assert f"{rows['c3']['sqnr_db']:.1f}" in page
    found = discover(run)
    assert found.model is not None and found.model.sha256 == model.sha256


def test_report_reuses_its_verification_and_is_deterministic(run, capsys):
    first = (run / "report.html").read_bytes()
    mtime = (run / PARTIAL_VERIFY).stat().st_mtime_ns
    out = run / "again.html"
    rc = main(["report", str(run), "--limit", str(LIMIT), "--sqnr-images", str(SQNR_IMAGES),
               "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0
    assert f"reusing {PARTIAL_VERIFY}" in captured.err
    assert captured.out.strip().splitlines()[-1] == f"report written to {out}"
    assert (run / PARTIAL_VERIFY).stat().st_mtime_ns == mtime
    assert out.read_bytes() == first
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary left


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if not os.environ.get("CI"):
            pytest.skip("chromium is not installed (`apt-get install chromium`)")
        pytest.fail("chromium is required in CI (`.ci/run` installs it)")
    return exe


def _chrome(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _loaded_images(exe: str, page: Path, tmp: Path) -> tuple[int, int]:
    probe = tmp / f"probe-{page.stem}.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    proc = _chrome(exe, tmp, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-loaded="(\d+)"', proc.stdout)
    assert m, (proc.returncode, proc.stderr[-2000:])
    return int(m.group(1)), int(m.group(2))


def test_report_renders_in_headless_chromium(run, tmp_path):
    from PIL import Image

    exe = _chromium()
    page = run / "report.html"
    shot = tmp_path / "report.png"
    proc = _chrome(exe, tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.int16)
    assert img.shape == (4000, 1280)
    ink = img < 200
    assert ink.mean() > 0.02, "the screenshot is (almost) blank"
    rows_with_ink = np.flatnonzero(ink.any(axis=1))
    assert rows_with_ink.max() - rows_with_ink.min() > 2000  # content all the way down
    assert len(np.unique(img)) > 64  # plots, not only text
    expected = len(re.findall(r"<img ", page.read_text(encoding="utf-8")))
    assert _loaded_images(exe, page, tmp_path) == (expected, expected)
    # the probe can fail: one image whose data is not a PNG
    broken = tmp_path / "broken.html"
    good = base64.b64encode(_images(page.read_text(encoding="utf-8"))[0]).decode()
    broken.write_text(
        f'<!DOCTYPE html><html><body><img src="data:image/png;base64,{good}">'
        '<img src="data:image/png;base64,bm90IGEgcG5n"></body></html>'
    )
    assert _loaded_images(exe, broken, tmp_path) == (2, 1)


# --------------------------------------------------------------------------------------------
# export-c and mcu-test results
# --------------------------------------------------------------------------------------------


def test_report_shows_export_and_mcu_figures(run, tmp_path, capsys):
    skip_unless(*MCU_TOOLS)
    run2 = tmp_path / "run2"
    shutil.copytree(run, run2, ignore=shutil.ignore_patterns("*.html"))
    export = run2 / "c"
    assert main(["export-c", str(run2 / "model_int8.tflite"), "--out", str(export), "-q"]) == 0
    mcu_json = run2 / "mcu.json"
    args = ["mcu-test", str(export), "--board", "microbit", "--images", "4", "--json"]
    assert main([*args, str(mcu_json), "-q"]) == 0
    # a stale measurement of another model must be ignored, with a note
    stale = json.loads((export / "export.json").read_text())
    stale["model"]["sha256"] = "0" * 64
    (run2 / "old").mkdir()
    (run2 / "old" / "export.json").write_text(json.dumps(stale))
    capsys.readouterr()
    path, rep = write_report(run2, options=Options(limit=LIMIT, sqnr_images=20, quiet=True))
    assert rep.verify_written is None  # the copied verification is reused
    page = path.read_text(encoding="utf-8")
    ex = json.loads((export / "export.json").read_text())
    board = json.loads(mcu_json.read_text())["boards"][0]
    mem, ins = board["memory"], board["instructions"]
    scratch = '<code>LENET_SCRATCH_SIZE</code> (activations)</td><td class="n">'
    assert f"{scratch}{ex['scratch_size']:,} B" in page
    assert f"{ex['weight_bytes']['total']:,} B" in page
    assert f"{ex['tflm_arena']['kTensorArenaSize']:,} B" in page
    row = re.search(r"<td>microbit</td><td>Cortex-M0</td><td>portable</td>(.*?)</tr>", page)
    assert row, "no microbit row in the MCU table"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[0] == f"{mem['flash']['total']:,} / {mem['flash']['size']:,}"
    assert cells[3] == f"{mem['stack']['high_water']:,}"
    assert cells[4] == f"{mem['peak_ram']:,}"
    assert cells[6] == f"{ins['per_inference']:,}"
    assert "bit-exact" in page and "Not measured" not in page
    assert "old/export.json (export) was made from another model" in page
    assert len(_images(page)) == 6  # the flash/RAM chart joins


# --------------------------------------------------------------------------------------------
# Partial run directories and errors
# --------------------------------------------------------------------------------------------


def test_report_of_a_run_without_int8_model_says_what_is_missing(run, tmp_path, capsys):
    part = tmp_path / "float_only"
    part.mkdir()
    shutil.copy(run / "model.keras", part / "model.keras")
    assert main(["report", str(part), "--limit", "50", "-q"]) == 0
    page = (part / "report.html").read_text(encoding="utf-8")
    assert page.count('class="missing"') >= 5
    assert f"lenet-edge quantize {part.as_posix()}/model.keras --out" in page
    assert f"lenet-edge train --out {part.as_posix()}" in page  # no train.json either
    assert not (part / "verify.json").exists()
    assert "<img " not in page


def test_report_errors_are_one_line(run, tmp_path, capsys):
    from tests.support.tflite_build import edit_model, pack

    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "no such directory" in _only_line(capsys.readouterr().err)
    (tmp_path / "file").write_text("x")
    assert main(["report", str(tmp_path / "file")]) == 2  # click: not a directory
    _only_line(capsys.readouterr().err)
    assert main(["report", str(tmp_path)]) == 1  # nothing to report on
    assert "no model.keras and no int8 .tflite" in _only_line(capsys.readouterr().err)
    # two different int8 models and no way to tell which one belongs to the run
    two = tmp_path / "two"
    shutil.copytree(run, two)
    other = edit_model((two / "model_int8.tflite").read_bytes())
    other.description = b"another model"
    (two / "other_int8.tflite").write_bytes(pack(other))
    assert main(["report", str(two), "-q"]) == 1
    line = _only_line(capsys.readouterr().err)
    assert "several int8 models" in line and "--model" in line
    assert main(["report", str(two), "--model", str(two / "model.keras"), "-q"]) == 1
    assert "not a .tflite" in _only_line(capsys.readouterr().err)
    # MODEL is the second argument, as in the other commands; --model is a deprecated alias
    assert main(["report", str(two), str(two / "model.keras"), "-q"]) == 1
    assert "not a .tflite" in _only_line(capsys.readouterr().err)
    args = ["report", str(two), str(two / "model_int8.tflite"), "--model"]
    assert main([*args, str(two / "other_int8.tflite"), "-q"]) == 2
    assert "differ" in _only_line(capsys.readouterr().err)
    assert (
        not (two / "report.html").exists()
        or (two / "report.html").read_bytes() == (run / "report.html").read_bytes()
    )


def test_report_escapes_every_name_and_string(run, tmp_path, capsys):
    """File names, model names and strings read from JSON are HTML-escaped (issue 14)."""
    import html

    name = """r<b>"q'&"""
    hostile = run.parent / name  # same parent as `run`: the page's title is the folder name
    shutil.copytree(run, hostile, ignore=shutil.ignore_patterns("*.html"))
    tflite = hostile / """<script>alert("x")</script>'.tflite""".replace("/", "")
    (hostile / "model_int8.tflite").rename(tflite)
    verify_doc = json.loads((hostile / PARTIAL_VERIFY).read_text())
    verify_doc["command"] = """lenet-edge verify "<script>alert('c')</script>" & more"""
    (hostile / PARTIAL_VERIFY).write_text(json.dumps(verify_doc))
    train = json.loads((hostile / "train.json").read_text())
    train["model"]["variant"] = """<img src=x onerror="alert(1)">"""
    (hostile / "train.json").write_text(json.dumps(train))
    args = ["report", str(hostile), str(tflite), "--limit", str(LIMIT), "--sqnr-images", "20"]
    try:
        assert main([*args, "-q"]) == 0
        page = (hostile / "report.html").read_text(encoding="utf-8")
    finally:
        shutil.rmtree(hostile)
    assert "<script" not in page and "<img src=x" not in page and '<b>"q' not in page
    title = re.search(r"<title>(.*?)</title>", page)
    assert title and html.unescape(title.group(1)) == f"lenet-edge report: {name}"
    # shown, escaped: the model's file name, a command and a model variant read from JSON
    text = html.unescape(page)
    assert tflite.name in text and verify_doc["command"] in text
    assert train["model"]["variant"] in text and "&lt;script&gt;alert(" in page
    # every attribute value is one of the page's own: no quote in a name could end one early
    attrs = re.findall(r'\s([a-z-]+)="', page)
    assert set(attrs) <= {"lang", "charset", "name", "content", "href", "id", "class", "src",
                          "alt", "width", "height", "style"}  # fmt: skip


def test_verify_target_never_replaces_a_file(tmp_path):
    from lenet_edge.report.build import verify_target

    assert verify_target(tmp_path, 10000, False) == (tmp_path / "verify.json", None)
    assert verify_target(tmp_path, 300, True) == (tmp_path / "verify-limit-300.json", None)
    (tmp_path / "verify.json").write_text("{}")
    (tmp_path / "verify-limit-300.json").write_text("{}")
    for n, limited in ((10000, False), (300, True)):
        path, why = verify_target(tmp_path, n, limited)
        assert path is None and why and "left as it is" in why and "not saved" in why


def test_limit_run_keeps_the_full_verification_and_writes_only_after_the_page(
    run, tmp_path, capsys, monkeypatch
):
    """A --limit run never replaces RUN/verify.json; a failed page write leaves no
    verification behind; an existing stale file is kept and said to be stale (issue 14)."""
    from lenet_edge.report import build

    run3 = tmp_path / "run3"
    shutil.copytree(run, run3, ignore=shutil.ignore_patterns("*.html", "verify*.json"))
    full = json.loads((run / PARTIAL_VERIFY).read_text())
    full["dataset"]["images"] = 10000  # stands for a full verification of this model
    (run3 / "verify.json").write_text(json.dumps(full))
    before = (run3 / "verify.json").read_bytes()
    args = ["report", str(run3), "--limit", "40", "--sqnr-images", "10", "-q"]

    def disk_full(path: Any, text: str) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(build, "atomic_write_text", disk_full)
        assert main(args) == 1
    line = _only_line(capsys.readouterr().err)
    assert "No space left on device" in line and "nothing was written" in line
    assert sorted(p.name for p in run3.iterdir()) == sorted(
        ["model.keras", "train.json", "model_int8.tflite", "verify.json"]
    )
    assert main(args) == 0
    assert (run3 / "verify.json").read_bytes() == before
    partial = json.loads((run3 / "verify-limit-40.json").read_text())
    assert partial["dataset"]["images"] == 40 and "--limit 40" in partial["command"]
    # a stale file where the verification would be saved is kept, and the page says so
    stale = dict(partial, results={"tflm": partial["results"]["tflm"]})  # backends missing
    (run3 / "verify-limit-40.json").write_text(json.dumps(stale))
    kept = (run3 / "verify-limit-40.json").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "verify-limit-40.json in the run directory is not a verification" in err
    assert (run3 / "verify-limit-40.json").read_bytes() == kept
    assert (run3 / "verify.json").read_bytes() == before
    page = (run3 / "report.html").read_text(encoding="utf-8")
    assert "verify-limit-40.json in the run directory is not a verification" in page
    assert "<td>verification</td><td>not saved</td>" in page
