"""The bad-input corpus: every command, fed broken files, impossible paths and bad flags.

Each case runs the real console entry (``python -m lenet_edge ...``) in a subprocess, so a
traceback anywhere would show on stderr. For every case:

* the exit code is the documented one: 2 for a usage error, 1 for a failure;
* stderr is exactly one line, ``error: ...``, matching the documented message of that class
  of bad input (README, "Exit codes and error messages"), never an "internal error" and never
  a traceback;
* stdout is empty (nothing half-reported);
* nothing changed on disk: the case directory (where outputs go, with any earlier output
  placed there first) and the shared inputs hold the same files with the same bytes, and no
  temporary file or directory was left behind.

Validation comes before heavy work, so almost every case fails in well under a second; the
few that cannot (a write that fails at the very end) use tiny models or ``--limit``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as s

from lenet_edge import data
from tests.support.export_helpers import MCU_TOOLS, skip_unless
from tests.support.tflite_build import ModelBuilder, edit_model, pack

# ----------------------------------------------------------------------------- the inputs


def _png(pixels: np.ndarray) -> bytes:
    """A grayscale 8-bit PNG, written by hand (no Pillow needed to make the corpus)."""
    h, w = pixels.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = b"".join(b"\x00" + bytes(row) for row in pixels.astype(np.uint8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _digit_png() -> bytes:
    img = np.full((40, 30), 255, np.uint8)
    img[8:32, 13:17] = 0  # a "1"
    return _png(img)


def _float_lenet(side: int) -> bytes:
    """A float LeNet-shaped classifier: [1, side, side, 1] -> FC(10) -> SOFTMAX."""
    b = ModelBuilder()
    x = b.tensor([1, side, side, 1], "FLOAT32", name="input")
    shape = b.tensor([2], "INT32", data=np.array([1, side * side], np.int32))
    flat = b.tensor([1, side * side], "FLOAT32")
    w = b.tensor([10, side * side], "FLOAT32", data=np.full((10, side * side), 0.01, np.float32))
    logits = b.tensor([1, 10], "FLOAT32")
    y = b.tensor([1, 10], "FLOAT32", name="probs")
    b.op("RESHAPE", [x, shape], [flat])
    b.op(
        "FULLY_CONNECTED",
        [flat, w, -1],
        [logits],
        s.FullyConnectedOptionsT(),
        "FullyConnectedOptions",
    )
    sm = s.SoftmaxOptionsT()
    sm.beta = 1.0
    b.op("SOFTMAX", [logits], [y], sm, "SoftmaxOptions")
    return b.build([x], [y])


def _int8_classifier(shape: list[int], batch: int = 1) -> bytes:
    """int8 [batch, *shape] -> RESHAPE -> FC(10) -> SOFTMAX (valid for LiteRT)."""
    n = int(np.prod(shape))
    b = ModelBuilder()
    x = b.tensor([batch, *shape], "INT8", 1 / 255, -128, name="input")
    shp = b.tensor([2], "INT32", data=np.array([batch, n], np.int32))
    flat = b.tensor([batch, n], "INT8", 1 / 255, -128)
    w = b.tensor([10, n], "INT8", 0.01, 0, data=np.ones((10, n), np.int8))
    bias = b.tensor([10], "INT32", 0.01 / 255, 0, data=np.zeros(10, np.int32))
    logits = b.tensor([batch, 10], "INT8", 0.1, 0)
    y = b.tensor([batch, 10], "INT8", 1 / 256, -128, name="probs")
    b.op("RESHAPE", [x, shp], [flat])
    b.op(
        "FULLY_CONNECTED",
        [flat, w, bias],
        [logits],
        s.FullyConnectedOptionsT(),
        "FullyConnectedOptions",
    )
    sm = s.SoftmaxOptionsT()
    sm.beta = 1.0
    b.op("SOFTMAX", [logits], [y], sm, "SoftmaxOptions")
    return b.build([x], [y])


def _depthwise_add() -> bytes:
    """int8 [1, 32, 32, 1] -> DEPTHWISE_CONV_2D -> ADD -> output: ops outside the set."""
    b = ModelBuilder()
    x = b.tensor([1, 32, 32, 1], "INT8", 1 / 255, -128, name="input")
    w = b.tensor([1, 3, 3, 1], "INT8", 0.1, 0, data=np.ones((1, 3, 3, 1), np.int8))
    y = b.tensor([1, 32, 32, 1], "INT8", 0.1, 0)
    z = b.tensor([1, 32, 32, 1], "INT8", 0.1, 0)
    dw = s.DepthwiseConv2DOptionsT()
    dw.padding, dw.strideH, dw.strideW, dw.depthMultiplier = s.Padding.SAME, 1, 1, 1
    dw.dilationHFactor = dw.dilationWFactor = 1
    b.op("DEPTHWISE_CONV_2D", [x, w, -1], [y], dw, "DepthwiseConv2DOptions")
    b.op("ADD", [y, y], [z], s.AddOptionsT(), "AddOptions")
    return b.build([x], [z])


def _five_outputs(real: bytes) -> bytes:
    """The real LeNet with five outputs (its last five activation tensors)."""
    m = edit_model(real)
    sg = m.subgraphs[0]
    sg.outputs = [int(op.outputs[0]) for op in sg.operators[-5:]]
    m.signatureDefs = None
    return pack(m)


def _tamper_idx(src: Path, dst: Path, how: str) -> None:
    raw = bytearray(src.read_bytes())
    if how == "truncate":
        raw = raw[: len(raw) - 1000]
    elif how == "bitflip":
        raw[len(raw) // 2] ^= 0x10
    elif how == "header":
        raw[0:4] = b"\x00\x00\x0d\x03"  # IDX type 0x0d (float), same length
    dst.write_bytes(bytes(raw))


TRUNCATED_TFLITE = (
    r"truncated.tflite: (truncated or corrupted TensorFlow Lite flatbuffer"
    r"|not a valid .tflite model)"
)


@dataclass
class Inputs:
    """Shared, read-only inputs (the tests check that no case changes them)."""

    dir: Path
    mnist_dir: Path  # the real MNIST files
    export: Path  # a complete export-c output of the real int8 LeNet

    def __call__(self, name: str) -> Path:
        return self.dir / name


@pytest.fixture(scope="module")
def inputs(
    tmp_path_factory: pytest.TempPathFactory, int8_model: Any, trained_model: Any, mnist: Any
) -> Inputs:
    from firmware_export.export import export_model, write_export

    d = tmp_path_factory.mktemp("corpus-inputs")
    real = int8_model().read_bytes()
    keras = (trained_model() / "model.keras").read_bytes()
    files = {
        "int8.tflite": real,
        "model.keras": keras,
        "empty.tflite": b"",
        "empty.keras": b"",
        "truncated.tflite": real[: len(real) * 2 // 5],
        "random.tflite": np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes(),
        "random.keras": np.random.default_rng(2).integers(0, 256, 4096, np.uint8).tobytes(),
        "keras-named.tflite": keras,
        "tflite-named.keras": real,
        "truncated.keras": keras[: len(keras) // 2],
        "float.tflite": _float_lenet(32),
        "float28.tflite": _float_lenet(28),
        "dwconv-add.tflite": _depthwise_add(),
        "five-outputs.tflite": _five_outputs(real),
        "rgb28.tflite": _int8_classifier([28, 28, 3]),
        "lenet28.tflite": _int8_classifier([28, 28, 1]),
        "batch2.tflite": _int8_classifier([32, 32, 1], batch=2),
        "digit.png": _digit_png(),
        "blank.png": _png(np.full((28, 28), 255, np.uint8)),
        "text.png": b"this is a text file, not a picture\n",
        "truncated.png": _digit_png()[:60],
        "notes.txt": b"hello\n",
    }
    for name, blob in files.items():
        (d / name).write_bytes(blob)
    # A PNG header claiming 100,000 x 100,000 pixels (a decompression bomb).
    bomb = bytearray(_png(np.zeros((1, 1), np.uint8)))
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    (d / "huge.png").write_bytes(bytes(bomb))
    (d / "a-directory.png").mkdir()
    from PIL import Image

    for name, value in (("nan-pixel.tiff", np.nan), ("inf-pixel.tiff", np.inf)):
        img = np.full((28, 28), 255.0, np.float32)
        img[5:22, 12:16] = 0.0
        img[2, 2] = value
        Image.fromarray(img, mode="F").save(d / name)
    from lenet_edge.model import load_keras_model

    nan_model = load_keras_model(d / "model.keras")
    nan_model.set_weights([np.full_like(w, np.nan) for w in nan_model.get_weights()])
    nan_model.save(d / "nan.keras")
    result = export_model(real, n_vectors=3, images=mnist.x_test, labels=mnist.y_test)
    write_export(result, d / "export")
    found = data.locate()
    assert isinstance(found, dict), "the corpus needs MNIST as IDX files in the user cache"
    return Inputs(d, next(iter(found.values())).parent, d / "export")


# ----------------------------------------------------------------------------- the cases


@dataclass
class Ctx:
    """What a case may use: the shared inputs and its own (output) directory."""

    inp: Inputs
    case: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, name: str) -> str:
        return str(self.inp(name))

    def out(self, name: str) -> str:
        return str(self.case / name)

    def idx_dir(self, bad: str | None = None, how: str = "", drop: str | None = None) -> str:
        """A data dir with the real MNIST files (symlinks), one of them tampered or dropped."""
        d = self.case / "mnist"
        d.mkdir()
        for name in data.IDX_SHA256:
            if name == drop:
                continue
            if name == bad:
                _tamper_idx(self.inp.mnist_dir / name, d / name, how)
            else:
                (d / name).symlink_to(self.inp.mnist_dir / name)
        return str(d)

    def previous_run(self) -> str:
        """An earlier training run at the output path (must survive)."""
        d = self.case / "run"
        d.mkdir()
        shutil.copy(self.inp("model.keras"), d / "model.keras")
        (d / "train.json").write_text('{"previous": true}\n')
        return str(d)

    def previous_file(self, name: str) -> str:
        """An earlier output file at the output path (must survive)."""
        (self.case / name).write_bytes(b"earlier output\n")
        return str(self.case / name)

    def previous_export(self) -> str:
        """An earlier, complete export-c output at the output path (must survive)."""
        shutil.copytree(self.inp.export, self.case / "c")
        return str(self.case / "c")


def unwritable_dir() -> Path:
    """A directory in which nothing can be created, for root too (root ignores modes)."""
    if os.geteuid() != 0:
        d = Path(os.environ.get("TMPDIR", "/tmp")) / f"lenet-edge-ro-{os.getpid()}"
        d.mkdir(exist_ok=True)
        d.chmod(0o555)
        return d
    return Path("/proc/sys")  # read-only for everyone, and os.access says so


def write_fails_dir() -> Path | None:
    """A directory that looks writable (os.access says yes) but refuses new files: the
    failure then happens at the very end, at write time. sysfs does this for root."""
    if os.geteuid() == 0 and os.path.isdir("/sys") and os.access("/sys", os.W_OK):
        return Path("/sys")
    return None


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    code: int
    message: str  # regular expression the error line must match (after "error: ")
    env: Callable[[Ctx], dict[str, str]] | None = None
    needs_write_fails: bool = False
    needs_toolchain: bool = False  # fails after the toolchain check
    stdout_ok: bool = False


U, F = 2, 1  # usage error, failure


def _mcu(ctx: Ctx, *extra: str) -> list[str]:
    return ["mcu-test", str(ctx.inp.export), "--board", "microbit", *extra]


def _copy_export(ctx: Ctx, tamper: Callable[[Path], None]) -> str:
    d = ctx.case / "exp"
    shutil.copytree(ctx.inp.export, d)
    tamper(d)
    return str(d)


CASES: list[Case] = [
    # ---- data
    Case(
        "data info: no MNIST anywhere",
        lambda c: ["data", "info", "--data-dir", c.out("empty")],
        F,
        r"MNIST not found in .*empty.*; run `lenet-edge data fetch`",
        env=lambda c: {"XDG_CACHE_HOME": c.out("cache")},
    ),
    Case(
        "data info: truncated IDX file",
        lambda c: ["data", "info", "--data-dir", c.idx_dir("t10k-images-idx3-ubyte", "truncate")],
        F,
        r"t10k-images-idx3-ubyte: SHA-256 mismatch .* corrupted or truncated; delete it and run "
        r"`lenet-edge data fetch`",
    ),
    Case(
        "data info: bit-flipped IDX file (wrong checksum)",
        lambda c: ["data", "info", "--data-dir", c.idx_dir("train-labels-idx1-ubyte", "bitflip")],
        F,
        r"train-labels-idx1-ubyte: SHA-256 mismatch \(got [0-9a-f]{12}…, expected 65a50cbbf4e9…\)",
    ),
    Case(
        "data info: corrupted IDX header",
        lambda c: ["data", "info", "--data-dir", c.idx_dir("t10k-labels-idx1-ubyte", "header")],
        F,
        r"t10k-labels-idx1-ubyte: SHA-256 mismatch",
    ),
    Case(
        "data info: incomplete MNIST directory",
        lambda c: ["data", "info", "--data-dir", c.idx_dir(drop="t10k-labels-idx1-ubyte")],
        F,
        r"incomplete MNIST, missing t10k-labels-idx1-ubyte; run `lenet-edge data fetch`",
    ),
    Case(
        "data info: mnist.npz that is not a zip",
        lambda c: ["data", "info", "--data-dir", _npz(c)],
        F,
        r"mnist.npz: not a valid mnist.npz \(.*\); delete it and run `lenet-edge data fetch`",
    ),
    Case(
        "data info: corrupted .gz IDX file",
        lambda c: ["data", "info", "--data-dir", _gz(c)],
        F,
        r"train-images-idx3-ubyte.gz: cannot read \(.*\); delete it and run",
    ),
    Case(
        "data fetch: --data-dir is a file",
        lambda c: ["data", "fetch", "--data-dir", c("notes.txt")],
        U,
        r"Invalid value for '--data-dir': Directory '.*notes.txt' is a file",
    ),
    Case(
        "data fetch: --data-dir cannot be created",
        lambda c: ["data", "fetch", "-q", "--data-dir", str(unwritable_dir() / "mnist")],
        F,
        r"cannot create .*mnist \(.*\); pass a writable --data-dir",
        env=lambda c: {"XDG_CACHE_HOME": c.out("cache")},
    ),
    # ---- train
    Case(
        "train: --epochs 0",
        lambda c: ["train", "--out", c.out("run"), "--epochs", "0"],
        U,
        r"Invalid value for '--epochs': 0 is not in the range 1<=x<=1000",
    ),
    Case(
        "train: --batch-size 0",
        lambda c: ["train", "--out", c.out("run"), "--batch-size", "0"],
        U,
        r"Invalid value for '--batch-size'",
    ),
    Case(
        "train: --learning-rate 0",
        lambda c: ["train", "--out", c.out("run"), "--learning-rate", "0"],
        U,
        r"Invalid value for '--learning-rate': 0.0 is not in the range 0<x<=1",
    ),
    Case(
        "train: --limit beyond the training split",
        lambda c: ["train", "--out", c.out("run"), "--limit", "60000"],
        U,
        r"Invalid value for '--limit': 60000 is not in the range 1<=x<=55000",
    ),
    Case(
        "train: unknown --variant",
        lambda c: ["train", "--out", c.out("run"), "--variant", "lenet7"],
        U,
        r"Invalid value for '--variant': 'lenet7' is not one of 'seed', 'modern'",
    ),
    Case(
        "train: --out missing",
        lambda c: ["train", "--epochs", "1"],
        U,
        r"Missing option '--out'",
    ),
    Case(
        "train: --out is an existing file",
        lambda c: ["train", "--out", c("notes.txt")],
        U,
        r"--out .*notes.txt is a file; give a directory",
    ),
    Case(
        "train: --out cannot be written",
        lambda c: ["train", "--out", str(unwritable_dir() / "run")],
        F,
        r"cannot write to .*: permission denied; choose another output path",
    ),
    Case(
        "train: bad flag next to an earlier run",
        lambda c: ["train", "--out", c.previous_run(), "--batch-size", "-5"],
        U,
        r"Invalid value for '--batch-size': -5 is not in the range 1<=x<=65536",
    ),
    Case(
        "train: corrupted MNIST",
        lambda c: [
            "train",
            "--out",
            c.out("run"),
            "--data-dir",
            c.idx_dir("train-images-idx3-ubyte", "bitflip"),
        ],
        F,
        r"train-images-idx3-ubyte: SHA-256 mismatch",
    ),
    # ---- quantize
    Case(
        "quantize: missing model",
        lambda c: ["quantize", c("nope.keras"), "--out", c.out("m.tflite")],
        F,
        r"nope.keras: no such file",
    ),
    Case(
        "quantize: empty file",
        lambda c: ["quantize", c("empty.keras"), "--out", c.out("m.tflite")],
        F,
        r"empty.keras: empty file",
    ),
    Case(
        "quantize: .tflite given where a .keras is expected",
        lambda c: ["quantize", c("tflite-named.keras"), "--out", c.out("m.tflite")],
        F,
        r"tflite-named.keras is a .tflite flatbuffer, not a Keras model; give the .keras file",
    ),
    Case(
        "quantize: truncated .keras archive",
        lambda c: ["quantize", c("truncated.keras"), "--out", c.out("m.tflite")],
        F,
        r"truncated.keras: truncated or corrupted .keras archive; re-run `lenet-edge train`",
    ),
    Case(
        "quantize: random bytes named .keras",
        lambda c: ["quantize", c("random.keras"), "--out", c.out("m.tflite")],
        F,
        r"random.keras: not a Keras model \(expected a .keras zip archive\)",
    ),
    Case(
        "quantize: bad model, earlier output kept",
        lambda c: ["quantize", c("truncated.keras"), "--out", c.previous_file("m.tflite")],
        F,
        r"truncated.keras: truncated or corrupted .keras archive",
    ),
    Case(
        "quantize: --calibration-samples -1",
        lambda c: [
            "quantize",
            c("model.keras"),
            "--out",
            c.out("m.tflite"),
            "--calibration-samples",
            "-1",
        ],
        U,
        r"Invalid value for '--calibration-samples': -1 is not in the range 1<=x<=55000",
    ),
    Case(
        "quantize: unknown --io",
        lambda c: ["quantize", c("model.keras"), "--out", c.out("m.tflite"), "--io", "int4"],
        U,
        r"Invalid value for '--io': 'int4' is not one of 'int8', 'uint8', 'float32'",
    ),
    Case(
        "quantize: --out would overwrite the input",
        lambda c: ["quantize", c("model.keras"), "--out", c("model.keras")],
        U,
        r"--out .* should be a .tflite path",
    ),
    Case(
        "quantize: --quant-json equal to --out",
        lambda c: [
            "quantize",
            c("model.keras"),
            "--out",
            c.out("m.tflite"),
            "--quant-json",
            c.out("m.tflite"),
        ],
        U,
        r"--quant-json must differ from the model and --out",
    ),
    Case(
        "quantize: --out is an existing directory",
        lambda c: ["quantize", c("model.keras"), "--out", str(c.case)],
        U,
        r"Invalid value for '--out': File '.*' is a directory",
    ),
    Case(
        "quantize: --out cannot be written",
        lambda c: ["quantize", c("model.keras"), "--out", str(unwritable_dir() / "m.tflite")],
        F,
        r"cannot write to .*: permission denied; choose another output path",
    ),
    # ---- verify
    Case(
        "verify: missing model",
        lambda c: ["verify", c("nope.tflite")],
        F,
        r"nope.tflite: no such file",
    ),
    Case(
        "verify: empty file",
        lambda c: ["verify", c("empty.tflite")],
        F,
        r"empty.tflite: empty file",
    ),
    Case(
        "verify: truncated .tflite",
        lambda c: ["verify", c("truncated.tflite")],
        F,
        TRUNCATED_TFLITE,
    ),
    Case(
        "verify: random bytes named .tflite",
        lambda c: ["verify", c("random.tflite")],
        F,
        r"random.tflite: not a .tflite (flatbuffer|model)",
    ),
    Case(
        "verify: .keras given where a .tflite is expected",
        lambda c: ["verify", c("keras-named.tflite")],
        F,
        r"keras-named.tflite is a Keras model \(.keras zip\), not a .tflite; convert it first "
        r"with `lenet-edge quantize",
    ),
    Case(
        "verify: a model with 5 outputs",
        lambda c: ["verify", c("five-outputs.tflite")],
        F,
        r"five-outputs.tflite: 1 inputs and 5 outputs; an image classifier with one input and "
        r"one output is expected",
    ),
    Case(
        "verify: 28x28 RGB input",
        lambda c: ["verify", c("rgb28.tflite"), "--limit", "5", "--no-arena"],
        F,
        r"rgb28.tflite: model input shape \[1, 28, 28, 3\] does not hold one 28x28 or 32x32 "
        r"grayscale image",
    ),
    Case(
        "verify: 28x28 LeNet with a 32x32 float reference",
        lambda c: ["verify", c("lenet28.tflite"), "--reference", c("float.tflite")],
        F,
        r"--reference .*float.tflite takes 32x32 images but .*lenet28.tflite takes 28x28",
    ),
    Case(
        "verify: --reference is not a model",
        lambda c: ["verify", c("int8.tflite"), "--reference", c("notes.txt")],
        F,
        r"notes.txt: not a model; --reference takes the .keras model \(or a float .tflite\)",
    ),
    Case(
        "verify: --min-accuracy as a fraction",
        lambda c: ["verify", c("int8.tflite"), "--min-accuracy", "0.99"],
        U,
        r"Invalid value for '--min-accuracy': 0.99 is not a percentage in \(1, 100\] \(0.99 "
        r"looks like a fraction; write 99\)",
    ),
    Case(
        "verify: unknown backend",
        lambda c: ["verify", c("int8.tflite"), "--backend", "tpu"],
        U,
        r"Invalid value for '--backend': 'tpu' is not one of",
    ),
    Case(
        "verify: --limit 0",
        lambda c: ["verify", c("int8.tflite"), "--limit", "0"],
        U,
        r"Invalid value for '--limit': 0 is not in the range 1<=x<=10000",
    ),
    Case(
        "verify: bad model, earlier --json kept",
        lambda c: ["verify", c("truncated.tflite"), "--json", c.previous_file("verify.json")],
        F,
        TRUNCATED_TFLITE,
    ),
    Case(
        "verify: --json would overwrite the model",
        lambda c: ["verify", c("int8.tflite"), "--json", c("int8.tflite")],
        U,
        r"--json .*int8.tflite would overwrite the model",
    ),
    Case(
        "verify: --json cannot be written",
        lambda c: ["verify", c("int8.tflite"), "--json", str(unwritable_dir() / "v.json")],
        F,
        r"cannot write to .*: permission denied; choose another output path",
    ),
    Case(
        "verify: --json write fails at the end",
        lambda c: [
            "verify",
            c("int8.tflite"),
            "-q",
            "--limit",
            "20",
            "--no-arena",
            "--json",
            str((write_fails_dir() or Path("/nonexistent")) / "v.json"),
        ],
        F,
        r"cannot write .*v.json: (Operation not permitted|Permission denied)",
        needs_write_fails=True,
        stdout_ok=True,  # the finished verification is printed; only the JSON could not be
        # written, which the message says
    ),
    # ---- export-c
    Case(
        "export-c: missing model",
        lambda c: ["export-c", c("nope.tflite"), "--out", c.out("c")],
        F,
        r"nope.tflite: no such file",
    ),
    Case(
        "export-c: empty file",
        lambda c: ["export-c", c("empty.tflite"), "--out", c.out("c")],
        F,
        r"empty.tflite: empty file",
    ),
    Case(
        "export-c: truncated .tflite",
        lambda c: ["export-c", c("truncated.tflite"), "--out", c.previous_export()],
        F,
        r"truncated.tflite: truncated or corrupted TensorFlow Lite flatbuffer \(\d+ bytes: an "
        r"offset or a length points past its end\); regenerate it",
    ),
    Case(
        "export-c: random bytes named .tflite",
        lambda c: ["export-c", c("random.tflite"), "--out", c.out("c")],
        F,
        r"random.tflite: not a .tflite model \(no TFL3 flatbuffer identifier\)",
    ),
    Case(
        "export-c: .keras given where a .tflite is expected",
        lambda c: ["export-c", c("keras-named.tflite"), "--out", c.out("c")],
        F,
        r"keras-named.tflite is a Keras model \(.keras zip\), not a .tflite; convert it first",
    ),
    Case(
        "export-c: float .tflite",
        lambda c: ["export-c", c("float.tflite"), "--out", c.previous_export()],
        F,
        r"float.tflite: cannot export this model: float model: 2 op\(s\) compute in floating "
        r"point .*; quantize it to full int8 first \(lenet-edge quantize\)",
    ),
    Case(
        "export-c: DEPTHWISE_CONV_2D and ADD",
        lambda c: ["export-c", c("dwconv-add.tflite"), "--out", c.out("c")],
        F,
        r"cannot export this model: unsupported ops ADD, DEPTHWISE_CONV_2D \(supported: ",
    ),
    Case(
        "export-c: a model with 5 outputs",
        lambda c: ["export-c", c("five-outputs.tflite"), "--out", c.out("c")],
        F,
        r"cannot export this model: the model has 5 outputs; export needs exactly 1",
    ),
    Case(
        "export-c: batch 2",
        lambda c: ["export-c", c("batch2.tflite"), "--out", c.out("c")],
        F,
        r"cannot export this model: batch 2 \(input tensor 0 'input' has shape \[2, 32, 32, 1\]\)",
    ),
    Case(
        "export-c: --out is an existing file",
        lambda c: ["export-c", c("int8.tflite"), "--out", c("notes.txt")],
        U,
        r"--out .*notes.txt is a file; give a directory",
    ),
    Case(
        "export-c: --out cannot be written",
        lambda c: ["export-c", c("int8.tflite"), "--out", str(unwritable_dir() / "c")],
        F,
        r"cannot write to .*: permission denied; choose another output path",
    ),
    Case(
        "export-c: --out write fails at the end",
        lambda c: [
            "export-c",
            c("int8.tflite"),
            "-q",
            "--test-vectors",
            "2",
            "--out",
            str((write_fails_dir() or Path("/nonexistent")) / "c"),
        ],
        F,
        r"cannot write .*c: (Operation not permitted|Permission denied); nothing was written",
        needs_write_fails=True,
    ),
    Case(
        "export-c: bad --prefix",
        lambda c: ["export-c", c("int8.tflite"), "--out", c.out("c"), "--prefix", "1net"],
        U,
        r"Invalid value for '--prefix'",
    ),
    Case(
        "export-c: --test-vectors 0",
        lambda c: ["export-c", c("int8.tflite"), "--out", c.out("c"), "--test-vectors", "0"],
        U,
        r"Invalid value for '--test-vectors': 0 is not in the range 1<=x<=10000",
    ),
    # ---- mcu-test
    Case(
        "mcu-test: missing directory",
        lambda c: ["mcu-test", c.out("nope"), "--board", "microbit"],
        F,
        r"nope is not a directory; give the --out directory of `lenet-edge export-c`",
    ),
    Case(
        "mcu-test: a directory that is not an export",
        lambda c: ["mcu-test", str(c.case), "--board", "microbit"],
        F,
        r"is not an export-c output \(no export.json\); give the --out directory",
    ),
    Case(
        "mcu-test: corrupted export.json",
        lambda c: [
            "mcu-test",
            _copy_export(c, lambda d: (d / "export.json").write_text("{not json")),
            "--board",
            "microbit",
        ],
        F,
        r"export.json: unreadable \(.*\); give the --out directory",
    ),
    Case(
        "mcu-test: export without its sources",
        lambda c: [
            "mcu-test",
            _copy_export(c, lambda d: shutil.rmtree(d / "standalone")),
            "--board",
            "microbit",
        ],
        F,
        r"is not a complete export-c output \(missing standalone/lenet.h\)",
    ),
    Case(
        "mcu-test: model.tflite changed after the export",
        lambda c: [
            "mcu-test",
            _copy_export(
                c,
                lambda d: (d / "model.tflite").write_bytes(c.inp("truncated.tflite").read_bytes()),
            ),
            "--board",
            "microbit",
        ],
        F,
        r"model.tflite does not match the SHA-256 in export.json \(changed after the export\?\); "
        r"re-run `lenet-edge export-c`",
        needs_toolchain=True,
    ),
    Case(
        "mcu-test: unknown board",
        lambda c: ["mcu-test", str(c.inp.export), "--board", "esp32"],
        U,
        r"Invalid value for '--board': 'esp32' is not one of",
    ),
    Case(
        "mcu-test: --images 0",
        lambda c: _mcu(c, "--images", "0"),
        U,
        r"Invalid value for '--images': '0' must be at least 1",
    ),
    Case(
        "mcu-test: --stack-size too small",
        lambda c: _mcu(c, "--stack-size", "16"),
        U,
        r"Invalid value for '--stack-size': 16 is not in the range 256<=x<=16777216",
    ),
    Case(
        "mcu-test: --json is a directory",
        lambda c: _mcu(c, "--json", str(c.case)),
        U,
        r"Invalid value for '--json': File '.*' is a directory",
    ),
    Case(
        "mcu-test: --json cannot be written",
        lambda c: _mcu(c, "--json", str(unwritable_dir() / "m.json")),
        F,
        r"cannot write to .*: permission denied; choose another output path",
    ),
    Case(
        "mcu-test: missing toolchain",
        lambda c: _mcu(c),
        F,
        r"arm-none-eabi-gcc not found on PATH; ",
        env=lambda c: {"PATH": c.out("empty-path")},
    ),
    # ---- predict
    Case(
        "predict: an image that is not an image",
        lambda c: ["predict", c("int8.tflite"), c("text.png")],
        F,
        r"text.png: not a picture \(give a PNG or JPG of a digit\)",
    ),
    Case(
        "predict: truncated PNG",
        lambda c: ["predict", c("int8.tflite"), c("truncated.png")],
        F,
        r"truncated.png: (cannot decode the picture|not a picture)",
    ),
    Case(
        "predict: blank picture",
        lambda c: ["predict", c("int8.tflite"), c("blank.png")],
        F,
        r"blank.png: blank picture, no digit found",
    ),
    Case(
        "predict: decompression bomb",
        lambda c: ["predict", c("int8.tflite"), c("huge.png")],
        F,
        r"huge.png: .*too (large|many pixels)",
    ),
    Case(
        "predict: missing image",
        lambda c: ["predict", c("int8.tflite"), c("nope.png")],
        F,
        r"nope.png: no such file",
    ),
    Case(
        "predict: a directory as the image",
        lambda c: ["predict", c("int8.tflite"), c("a-directory.png")],
        F,
        r"a-directory.png is a directory, not a picture",
    ),
    Case(
        "predict: no image",
        lambda c: ["predict", c("int8.tflite")],
        U,
        r"Missing argument 'IMAGES...'",
    ),
    Case(
        "predict: random bytes named .tflite",
        lambda c: ["predict", c("random.tflite"), c("digit.png")],
        F,
        r"random.tflite: not a model; give the .keras file from `lenet-edge train` or a .tflite",
    ),
    Case(
        "predict: truncated .tflite",
        lambda c: ["predict", c("truncated.tflite"), c("digit.png")],
        F,
        TRUNCATED_TFLITE,
    ),
    Case(
        "predict: a model with 5 outputs",
        lambda c: ["predict", c("five-outputs.tflite"), c("digit.png")],
        F,
        r"five-outputs.tflite: 1 inputs and 5 outputs",
    ),
    Case(
        "predict: 28x28 RGB input",
        lambda c: ["predict", c("rgb28.tflite"), c("digit.png")],
        F,
        r"rgb28.tflite: model input shape \[1, 28, 28, 3\] does not hold one 28x28 or 32x32 "
        r"grayscale image",
    ),
    Case(
        "predict: truncated .keras",
        lambda c: ["predict", c("truncated.keras"), c("digit.png"), "--json", "-"],
        F,
        r"truncated.keras: truncated or corrupted .keras archive",
    ),
    # ---- names and numbers that would break the output: refused at the door (exit 2)
    Case(
        "train: --learning-rate nan",
        lambda c: ["train", "--out", c.out("run"), "--learning-rate", "nan"],
        U,
        r"Invalid value for '--learning-rate': 'nan' is not a finite number",
    ),
    Case(
        "train: --learning-rate inf",
        lambda c: ["train", "--out", c.out("run"), "--learning-rate", "inf"],
        U,
        r"Invalid value for '--learning-rate': 'inf' is not a finite number",
    ),
    Case(
        "train: --seed 2**70",
        lambda c: ["train", "--out", c.out("run"), "--seed", str(2**70)],
        U,
        r"Invalid value for '--seed': 1180591620717411303424 is not in the range "
        r"0<=x<=4294967295",
    ),
    Case(
        "quantize: --seed 2**32",
        lambda c: ["quantize", c("model.keras"), "--out", c.out("q.tflite"), "--seed", str(2**32)],
        U,
        r"Invalid value for '--seed': 4294967296 is not in the range 0<=x<=4294967295",
    ),
    Case(
        "verify: --min-accuracy nan",
        lambda c: ["verify", c("int8.tflite"), "--min-accuracy", "nan"],
        U,
        r"Invalid value for '--min-accuracy': 'nan' is not a finite number",
    ),
    Case(
        "mcu-test: --timeout inf",
        lambda c: _mcu(c, "--timeout", "inf"),
        U,
        r"Invalid value for '--timeout': 'inf' is not a finite number",
    ),
    Case(
        "mcu-test: --count-images 2**70",
        lambda c: _mcu(c, "--count-images", str(2**70)),
        U,
        r"Invalid value for '--count-images': 1180591620717411303424 is not in the range",
    ),
    Case(
        "mcu-test: --images beyond the test set",
        lambda c: _mcu(c, "--images", "20000"),
        U,
        r"Invalid value for '--images': 20000 is more than the 10,000 MNIST test images there "
        r"are \('all' streams every one of them\)",
    ),
    Case(
        "export-c: --test-vectors 2**70",
        lambda c: ["export-c", c("int8.tflite"), "--out", c.out("c"), "--test-vectors", str(2**70)],
        U,
        r"Invalid value for '--test-vectors': 1180591620717411303424 is not in the range "
        r"1<=x<=10000",
    ),
    Case(
        "bench: --epochs 2**70",
        lambda c: ["bench", "--out", c.out("b"), "--epochs", str(2**70)],
        U,
        r"Invalid value for '--epochs': 1180591620717411303424 is not in the range 1<=x<=1000",
    ),
    # ---- what the system or the user causes: one line, never a traceback
    Case(
        "verify: a symlink loop as the model",
        lambda c: ["verify", _loop(c)],
        F,
        r"loop\.tflite: a loop of symbolic links \(Too many levels of symbolic links\)",
    ),
    Case(
        "export-c: a symlink loop as the model",
        lambda c: ["export-c", _loop(c), "--out", c.out("c")],
        F,
        r"loop\.tflite: a loop of symbolic links",
    ),
    Case(
        "predict: a symlink loop as a picture",
        lambda c: ["predict", c("int8.tflite"), _loop(c)],
        F,
        r"loop\.tflite: a loop of symbolic links",
    ),
    Case(
        "verify: a missing model with a non-UTF-8 name",
        lambda c: ["verify", os.fsdecode(os.fsencode(c.out("model")) + b"\xff.tflite")],
        F,
        r"model\\xff\.tflite: no such file$",
    ),
    Case(
        "predict: a non-UTF-8 picture name that is not a picture",
        lambda c: ["predict", c("int8.tflite"), _non_utf8_text(c)],
        F,
        r"notes\\xff\.png: not a picture",
    ),
    Case(
        "predict: a float TIFF with a NaN pixel",
        lambda c: ["predict", c("int8.tflite"), c("nan-pixel.tiff")],
        F,
        r"nan-pixel.tiff: 1 of 784 pixels are NaN or infinite; not a usable picture",
    ),
    Case(
        "predict: a float TIFF with an infinite pixel",
        lambda c: ["predict", c("int8.tflite"), c("inf-pixel.tiff")],
        F,
        r"inf-pixel.tiff: 1 of 784 pixels are NaN or infinite",
    ),
    # ---- messages that tell the truth
    Case(
        "data info: --data-dir is an empty directory (no fall back to the cache)",
        lambda c: ["data", "info", "--data-dir", _empty_dir(c)],
        F,
        r"MNIST not found in .*empty-dir \(--data-dir / \$LENET_EDGE_DATA: empty directory\); "
        r"run `lenet-edge data fetch` with this --data-dir",
    ),
    Case(
        "train: misspelled --data-dir",
        lambda c: ["train", "--out", c.out("run"), "--data-dir", c.out("mnsit")],
        F,
        r"MNIST not found in .*mnsit \(--data-dir / \$LENET_EDGE_DATA: no such directory\)",
    ),
    Case(
        "verify: misspelled $LENET_EDGE_DATA",
        lambda c: ["verify", c("int8.tflite"), "--limit", "5"],
        F,
        r"MNIST not found in .*mnsit \(--data-dir / \$LENET_EDGE_DATA: no such directory\)",
        env=lambda c: {"LENET_EDGE_DATA": c.out("mnsit")},
    ),
    Case(
        "quantize: --data-dir holding other files",
        lambda c: [
            "quantize",
            c("model.keras"),
            "--out",
            c.out("q.tflite"),
            "--data-dir",
            _other_files(c),
        ],
        F,
        r"MNIST not found in .*other \(--data-dir / \$LENET_EDGE_DATA: it holds neither the four "
        r"IDX files",
    ),
    Case(
        "quantize: a model with NaN weights (not a float fallback)",
        lambda c: ["quantize", c("nan.keras"), "--out", c.out("q.tflite")],
        F,
        r"nan.keras: the model has NaN or infinite weights \([\d,]+ of [\d,]+ values, first in "
        r"layer \w+\); it cannot be quantized, train it again",
    ),
    # ---- one convention for options
    Case(
        "predict: --json without a FILE",
        lambda c: ["predict", c("int8.tflite"), c("digit.png"), "--json"],
        U,
        r"Option '--json' requires an argument",
    ),
    Case(
        "data info: --json is a directory",
        lambda c: ["data", "info", "--json", str(c.case)],
        U,
        r"Invalid value for '--json': File '.*' is a directory",
    ),
]


def _loop(ctx: Ctx) -> str:
    """Two symbolic links pointing at each other."""
    (ctx.case / "loop.tflite").symlink_to("loop2.tflite")
    (ctx.case / "loop2.tflite").symlink_to("loop.tflite")
    return str(ctx.case / "loop.tflite")


def _non_utf8_text(ctx: Ctx) -> str:
    path = os.fsencode(ctx.case) + b"/notes\xff.png"
    with open(path, "wb") as f:
        f.write(b"hello\n")
    return os.fsdecode(path)


def _empty_dir(ctx: Ctx) -> str:
    (ctx.case / "empty-dir").mkdir()
    return str(ctx.case / "empty-dir")


def _other_files(ctx: Ctx) -> str:
    d = ctx.case / "other"
    d.mkdir()
    (d / "README").write_text("not MNIST\n")
    return str(d)


def _npz(ctx: Ctx) -> str:
    d = ctx.case / "npz"
    d.mkdir()
    (d / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    return str(d)


def _gz(ctx: Ctx) -> str:
    d = Path(ctx.idx_dir(drop="train-images-idx3-ubyte"))
    (d / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00 broken gzip stream")
    return str(d)


# ----------------------------------------------------------------------------- the checks


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``roots``, hidden ones included."""
    out: dict[str, bytes | None] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for d in dirnames:
                out[os.path.join(dirpath, d)] = None
            for f in filenames:
                p = os.path.join(dirpath, f)
                out[p] = Path(p).read_bytes() if not os.path.islink(p) else os.readlink(p).encode()
    return out


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "LENET_EDGE_DEBUG"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "lenet_edge", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=cwd,
        env=full,
    )


def check_outcome(
    case: Case,
    proc: subprocess.CompletedProcess[str],
    before: dict[str, bytes | None],
    after: dict[str, bytes | None],
) -> None:
    where = f"[{case.id}] stderr={proc.stderr!r} stdout={proc.stdout[-300:]!r}"
    assert "Traceback" not in proc.stderr, where
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, where
    line = lines[0]
    assert line.startswith("error: "), where
    assert "internal error" not in line, where
    assert re.search(case.message, line), f"{where}: does not match {case.message!r}"
    assert proc.returncode == case.code, where
    assert case.stdout_ok or proc.stdout == "", where
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    assert not (added or removed or changed), f"{where}: {added=} {removed=} {changed=}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, inputs: Inputs, tmp_path: Path) -> None:
    if case.needs_write_fails and write_fails_dir() is None:
        pytest.skip("needs a directory that accepts os.access but refuses writes (root, /sys)")
    if case.needs_toolchain:
        skip_unless(*MCU_TOOLS)
    ctx = Ctx(inputs, tmp_path)
    argv = case.argv(ctx)  # may create inputs inside the case directory
    env = case.env(ctx) if case.env else {}
    before = snapshot(tmp_path, inputs.dir)
    proc = run_cli(argv, env, tmp_path)
    after = snapshot(tmp_path, inputs.dir)
    log = os.environ.get("LENET_EDGE_CORPUS_LOG")  # to refresh the README section on error messages
    if log:
        line = (proc.stderr.splitlines() or [""])[-1]
        line = line.replace(str(tmp_path), "CASE").replace(str(inputs.dir), "INPUTS")
        with open(log, "a") as f:
            f.write(json.dumps({"case": case.id, "exit": proc.returncode, "stderr": line}) + "\n")
    check_outcome(case, proc, before, after)


def test_corpus_size_and_coverage() -> None:
    commands = [c.id.split(":")[0] for c in CASES]
    per = {cmd: commands.count(cmd) for cmd in dict.fromkeys(commands)}
    assert len(CASES) >= 40
    for cmd in ("data info", "train", "quantize", "verify", "export-c", "mcu-test", "predict"):
        assert per.get(cmd, 0) + per.get(cmd.replace(" info", " fetch"), 0) >= 3, per
    assert len({c.id for c in CASES}) == len(CASES)


def test_checks_can_fail(tmp_path: Path) -> None:
    """The outcome check rejects each kind of violation (so the corpus cannot pass vacuously)."""
    case = Case("x", lambda c: [], F, r"no such file")
    ok = subprocess.CompletedProcess([], 1, "", "error: a: no such file\n")
    check_outcome(case, ok, {}, {})
    bad = [
        (subprocess.CompletedProcess([], 1, "", "error: a: no such file\nmore\n"), {}),
        (subprocess.CompletedProcess([], 1, "", "Traceback (most recent call last):\n"), {}),
        (subprocess.CompletedProcess([], 2, "", "error: a: no such file\n"), {}),
        (subprocess.CompletedProcess([], 1, "partial", "error: a: no such file\n"), {}),
        (subprocess.CompletedProcess([], 1, "", "error: something else\n"), {}),
        (
            subprocess.CompletedProcess(
                [], 1, "", "error: internal error, KeyError: no such file\n"
            ),
            {},
        ),
        (ok, {"/x/.out.abc.tmp": b""}),
    ]
    for proc, extra in bad:
        with pytest.raises(AssertionError):
            check_outcome(case, proc, {}, extra)
    with pytest.raises(AssertionError):  # a file changed
        check_outcome(case, ok, {"/x/a": b"1"}, {"/x/a": b"2"})
    with pytest.raises(AssertionError):  # a file removed
        check_outcome(case, ok, {"/x/a": b"1"}, {})
