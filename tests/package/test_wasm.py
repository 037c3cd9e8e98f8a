"""The WebAssembly package (``firmware_export.package.wasm``) and the report's "Try the
firmware" section, run in headless Chromium driven by Selenium.

The module is built with clang/lld from a real export; the page's engine must give, byte for
byte, what the host engine (the same C compiled by gcc) and TFLM give for the same 28×28
pixels, for MNIST test digits fed directly and for a digit drawn on the canvas with the pointer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_export.cflags import OPTIMIZE
from firmware_export.mnist import mnist_inputs
from firmware_export.package import wasm
from lenet_edge.cli import main
from tests.support.browser import CHROMIUM_FLAGS
from tests.support.export_helpers import STRICT, compile_harness, requires, run_engine, skip_unless

pytestmark = requires("clang", "wasm-ld")

MODERN = {"variant": "modern"}  #: the report tests' model (trained once per session)
PREFIX = "lenet"
DRAWN = 0  #: the test digit drawn on the canvas (a 7)


# --------------------------------------------------------------------------------------------
# Reading .wasm files
# --------------------------------------------------------------------------------------------


def _leb(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _sections(b: bytes) -> list[tuple[int, bytes]]:
    """(id, payload) of every section of a WebAssembly binary (module or object file)."""
    assert b[:8] == b"\0asm\x01\0\0\0", "not a WebAssembly 1.0 binary"
    i, out = 8, []
    while i < len(b):
        n, j = _leb(b, i + 1)
        out.append((b[i], b[j : j + n]))
        i = j + n
    assert i == len(b)
    return out


def _exports(payload: bytes) -> list[tuple[str, int]]:
    n, i = _leb(payload, 0)
    out = []
    for _ in range(n):
        length, i = _leb(payload, i)
        name = payload[i : i + length].decode()
        kind = payload[i + length]
        _, i = _leb(payload, i + length + 1)
        out.append((name, kind))
    return out


# --------------------------------------------------------------------------------------------
# Fixtures: a run directory with an export and its wasm package, the report, a browser
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, trained_model: Any, int8_model: Any) -> Path:
    """A run directory (model.keras, train.json, the int8 model), exported to run/c with the
    wasm package in run/c/wasm, and its report (the first 50 test images)."""
    src = trained_model(**MODERN)
    run_dir = tmp_path_factory.mktemp("wasm") / "run"
    run_dir.mkdir()
    for name in ("model.keras", "train.json"):
        shutil.copy(src / name, run_dir / name)
    shutil.copy(int8_model(**MODERN), run_dir / "model_int8.tflite")
    export = run_dir / "c"
    assert main(["export-c", str(run_dir / "model_int8.tflite"), "--out", str(export), "-q"]) == 0
    wasm.write(export, export / "wasm", json.loads((export / "export.json").read_text()))
    assert main(["report", str(run_dir), "--limit", "50", "--sqnr-images", "10", "-q"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def host_engine(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``engine(pixels [N, 28, 28] uint8) -> int8 [N, 10]``: the export's engine compiled by
    gcc for this machine, on the pixels quantized as the engine's quantize_mnist does."""
    work = tmp_path_factory.mktemp("host")
    meta = json.loads((run / "c" / "export.json").read_text())
    binary = compile_harness(run / "c" / "standalone", work / "harness", [*STRICT, OPTIMIZE])
    inp = meta["input"]

    def engine(pixels: np.ndarray) -> np.ndarray:
        inputs = mnist_inputs(
            np.asarray(pixels, dtype=np.uint8), tuple(inp["shape"]), inp["scale"], inp["zero_point"]
        )
        return run_engine(binary, inputs, meta["output"]["size"], work)[0]

    return engine


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium under the system chromedriver, with a fresh profile."""
    skip_unless("chromium", "chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "chromedriver"), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, page: Path) -> Any:
    """Load ``page`` from its file:// URL; wait until the engine is loaded; return the pad."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri())
    state = WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "var t = window.lenetTry; return t && (t.ready || t.error) ? [t.ready, t.error] : null"
        )
    )
    assert state == [True, None], f"the engine did not load: {state}"
    pad = browser.find_element("id", "try-canvas")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
    return pad


def _tflm_vectors(export: Path) -> tuple[np.ndarray, np.ndarray]:
    """The export's test vectors: raw 28×28 digits and TFLM's int8 outputs for them."""
    text = (export / "test" / f"{PREFIX}_test_vectors.c").read_text()

    def array(name: str) -> np.ndarray:
        m = re.search(rf"{name}\[[^=]*=\s*\{{(.*?)\}};", text, re.S)
        assert m, name
        body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)  # row comments
        return np.array([int(v) for v in re.findall(r"-?\d+", body)])

    raw = array(f"{PREFIX}_test_raw").astype(np.uint8).reshape(-1, 28, 28)
    expected = array(f"{PREFIX}_test_expected").astype(np.int8).reshape(len(raw), -1)
    return raw, expected


def _displayed(browser: Any) -> tuple[list[int], str]:
    """The scores and the class the page shows (DOM text)."""
    scores = [int(e.text) for e in browser.find_elements("css selector", "#try-bars .try-score")]
    return scores, browser.find_element("id", "try-class").text


# --------------------------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------------------------


def test_wasm_package_is_small_self_contained_and_deterministic(run, tmp_path):
    export = run / "c"
    meta = json.loads((export / "export.json").read_text())
    built = (export / "wasm" / f"{PREFIX}.wasm").read_bytes()
    again = tmp_path / "again"
    wasm.write(export, again, meta)
    assert (again / f"{PREFIX}.wasm").read_bytes() == built  # same export, same bytes
    for name in (f"{PREFIX}.js", f"src/{PREFIX}_wasm.c", "src/include/string.h"):
        assert (again / name).read_bytes() == (export / "wasm" / name).read_bytes()
    # a few tens of KB: the int8 weights and the code
    assert 10_000 < len(built) < 3 * meta["weight_bytes"]["total"], len(built)
    sections = _sections(built)
    ids = [sid for sid, _ in sections]
    assert 2 not in ids, "the module imports something (it must need no libc or host)"
    exports = dict(_exports(next(p for sid, p in sections if sid == 7)))
    assert exports == {"memory": 2, **{n: 0 for n in wasm.exported_functions(PREFIX, True)}}
    # the standard banner, JavaScript-style, with the model's SHA-256
    js = (export / "wasm" / f"{PREFIX}.js").read_text()
    assert js.startswith("// Generated by lenet-edge ") and meta["model"]["sha256"] in js
    shim = (export / "wasm" / "src" / f"{PREFIX}_wasm.c").read_text()
    assert shim.startswith("/*\n * Generated by lenet-edge ") and meta["model"]["sha256"] in shim


def test_host_simd_file_compiles_to_nothing_for_wasm32(run, tmp_path):
    """<prefix>_host_simd.c is part of the build; for wasm32 it holds no code and no data."""
    standalone = run / "c" / "standalone"
    include = run / "c" / "wasm" / "src" / "include"

    def section_ids(name: str) -> list[int]:
        obj = tmp_path / f"{name}.o"
        cmd = ["clang", *wasm.WASM_CFLAGS, "-isystem", str(include), f"-I{standalone}", "-c"]
        cmd += [str(standalone / f"{PREFIX}_{name}.c"), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return [sid for sid, _ in _sections(obj.read_bytes())]

    ids = section_ids("host_simd")
    assert 10 not in ids and 11 not in ids, f"code or data sections in the object: {ids}"
    # the same flags do compile the engine's kernels into code
    assert 10 in section_ids("layers")


def test_write_refuses_a_directory_without_the_engine(tmp_path):
    from firmware_export.errors import FirmwareExportError

    with pytest.raises(FirmwareExportError, match=r"no standalone/lenet\.h"):
        wasm.write(tmp_path, tmp_path / "wasm", {"prefix": PREFIX})


# --------------------------------------------------------------------------------------------
# The page, in Chromium
# --------------------------------------------------------------------------------------------


def test_report_embeds_the_package(run):
    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<section id="try_firmware"><h2>Try the firmware</h2>' in page
    assert "c/wasm/lenet.wasm" in page  # the export's package, not a build of its own
    assert "these are the bytes the MCU computes" in page
    assert "<script>" in page and 'src="http' not in page
    # the embedded module is the package's file
    config = re.search(r'<script type="application/json" id="try-config">(.*?)</script>', page)
    assert config
    import base64

    wasm_b64 = json.loads(config.group(1))["wasm"]
    assert base64.b64decode(wasm_b64) == (run / "c" / "wasm" / "lenet.wasm").read_bytes()


def test_page_engine_equals_tflm_and_host_engine_on_mnist_digits(run, browser, host_engine):
    """The exact 28×28 pixels of the export's test digits through the page's engine call
    (from file://): every output byte equals TFLM's and the gcc-built engine's."""
    raw, tflm = _tflm_vectors(run / "c")
    _open(browser, run / "report.html")
    got = browser.execute_script(
        "return arguments[0].map(function (p) { return window.lenetTry.predictPixels(p); })",
        raw.reshape(len(raw), -1).tolist(),
    )
    scores = np.array([g["scores"] for g in got], dtype=np.int8)
    classes = np.array([g["class"] for g in got])
    assert scores.shape == tflm.shape == (100, 10)
    assert np.array_equal(scores, tflm), "the browser's engine differs from TFLM"
    assert np.array_equal(scores, host_engine(raw)), "the browser's engine differs from gcc's"
    assert np.array_equal(classes, scores.argmax(axis=1))  # first highest on ties
    # the page shows the last one
    shown, cls = _displayed(browser)
    assert shown == scores[-1].tolist() and cls == str(classes[-1])


def _strokes(digit: np.ndarray, threshold: int = 128, step: int = 2) -> list[tuple[int, int, int]]:
    """Horizontal strokes (row, first column, last column) over the ink (light pixels) of a
    28×28 MNIST digit, every ``step`` rows (the pen is two MNIST pixels wide)."""
    out = []
    for y in range(0, 28, step):
        cols = np.flatnonzero(digit[y] >= threshold)
        if cols.size == 0:
            continue
        runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        out.extend((y, int(r[0]), int(r[-1])) for r in runs)
    return out


def test_drawn_digit_through_the_page(run, browser, host_engine, mnist, tmp_path):
    """Strokes of a known test digit drawn with the pointer: the page preprocesses the drawing,
    shows a class and the engine's scores, which equal the gcc-built engine's for the page's
    own 28×28 picture; the picture matches lenet-edge predict's preprocessing of the canvas."""
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains

    from lenet_edge.predict import mnist_style

    pad = _open(browser, run / "report.html")
    size = pad.size
    assert size["width"] == size["height"] == 280
    cell = size["width"] / 28
    half = size["width"] / 2
    digit = mnist.x_test[DRAWN]

    def at(y: float, x: float) -> tuple[int, int]:  # offsets from the pad's centre
        return round((x + 0.5) * cell - half), round((y + 0.5) * cell - half)

    strokes = _strokes(digit)
    assert len(strokes) >= 5
    chain = ActionChains(browser, duration=20)
    for y, x0, x1 in strokes:
        chain.move_to_element_with_offset(pad, *at(y, x0)).click_and_hold()
        chain.move_to_element_with_offset(pad, *at(y, (x0 + x1) / 2))
        chain.move_to_element_with_offset(pad, *at(y, x1)).release()
    chain.perform()

    last = browser.execute_script("return window.lenetTry.last")
    assert last is not None, "the drawing was not run"
    assert browser.execute_script("return window.lenetTry.runs") >= len(strokes)
    pixels = np.array(last["pixels"], dtype=np.uint8).reshape(28, 28)
    scores = np.array(last["scores"], dtype=np.int8)
    # the page shows the engine's output for its own picture, and the class
    shown, cls = _displayed(browser)
    assert shown == scores.tolist()
    assert cls == str(last["class"]) == str(int(scores.argmax()))
    assert np.array_equal(scores, host_engine(pixels[None])[0])
    # the picture: inside a 20×20 box, centred by centre of mass, like predict's
    ys, xs = np.nonzero(pixels)
    assert max(np.ptp(ys), np.ptp(xs)) + 1 == 20
    gray = np.array(browser.execute_script("return window.lenetTry.canvasGray()"))
    reference, inverted = mnist_style(gray.reshape(280, 280))
    assert not inverted
    a, b = pixels.astype(float).ravel(), reference.astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95, "the page's preprocessing departs from predict's"
    assert np.corrcoef(a, digit.astype(float).ravel())[0, 1] > 0.5  # it is the digit drawn

    # the layout: a screenshot with the pad, the 28×28 input and the bars visible
    shot = tmp_path / "try_firmware.png"
    assert browser.save_screenshot(str(shot))
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[0] >= 500 and img.shape[1] >= 1000
    for el in (
        pad,
        browser.find_element("id", "try-digit"),
        browser.find_element("id", "try-bars"),
        browser.find_element("css selector", ".try-top .try-fill"),
    ):
        assert el.is_displayed() and el.size["width"] > 0 and el.size["height"] > 0
    # side by side: the pad, then the 28×28 input, then the bars
    boxes = browser.execute_script(
        "return arguments[0].map(function (e) { var r = e.getBoundingClientRect();"
        " return [r.left, r.right, r.top]; })",
        [pad, browser.find_element("id", "try-digit"), browser.find_element("id", "try-bars")],
    )
    assert boxes[0][1] <= boxes[1][0] and boxes[1][1] <= boxes[2][0], boxes
    assert max(b[2] for b in boxes) - min(b[2] for b in boxes) < 60, boxes
    rect = browser.execute_script(
        "var r = arguments[0].getBoundingClientRect(); return [r.top, r.left]", pad
    )
    dpr = img.shape[1] / browser.execute_script("return window.innerWidth")
    top, left = round(rect[0] * dpr), round(rect[1] * dpr)
    region = img[top + 5 : top + round(275 * dpr), left + 5 : left + round(275 * dpr)]
    assert region.size and (region > 200).mean() > 0.05 and (region < 50).mean() > 0.3

    # a finger: one touch stroke is drawn and run too
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    runs = browser.execute_script("return window.lenetTry.runs")
    browser.execute_script("window.lenetTry.clear()")
    touch = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    touch.pointer_action.move_to(pad, -60, 0).pointer_down().move_to(pad, 60, 0).pointer_up()
    touch.perform()
    after = browser.execute_script("return window.lenetTry.last")
    assert browser.execute_script("return window.lenetTry.runs") > runs and after is not None
    assert _displayed(browser)[0] == after["scores"]


def test_section_says_how_to_build_when_it_cannot(run, tmp_path, monkeypatch):
    """No export: the section names the commands; an export but no clang: likewise, and the
    export's own package is used whenever it is there."""
    from lenet_edge.report import sections
    from lenet_edge.report.discover import discover

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "model_int8.tflite", bare / "model_int8.tflite")
    s = sections.try_firmware(discover(bare))
    assert s["missing"]["text"].startswith("Not built: no export")
    assert "export-c" in s["missing"]["command"] and "--format wasm" in s["missing"]["command"]

    with_export = tmp_path / "with_export"
    shutil.copytree(run, with_export, ignore=shutil.ignore_patterns("*.html", "wasm"))
    monkeypatch.setattr(wasm, "missing_tools", lambda: ["clang"])
    s = sections.try_firmware(discover(with_export))
    assert "clang" in s["missing"]["text"] and s["missing"]["command"].endswith("--format wasm")
    # with the package in the export, no compiler is needed
    s = sections.try_firmware(discover(run))
    assert s["missing"] is None and s["where"] == "c/wasm/lenet.wasm"
    monkeypatch.undo()
    # clang available, no package: built on the fly, same bytes as the package
    s = sections.try_firmware(discover(with_export))
    assert s["missing"] is None and s["where"].startswith("built for this page from c/")
    assert s["config"]["wasm"] == sections.try_firmware(discover(run))["config"]["wasm"]
