"""Reading ``.tflite`` files and running them on the host interpreters.

Nothing here imports TensorFlow. The flatbuffer is parsed with the schema bindings shipped with
``ai-edge-litert``, and verified by LiteRT's own flatbuffer verifier, so a missing, truncated or
foreign file is refused with one line before any heavy work starts.

Backends (all run the model one image at a time, batch 1, as the MCU does):

- ``litert``: ``ai_edge_litert`` with its default kernels (XNNPACK delegate), one thread;
- ``litert-ref``: ``ai_edge_litert`` with the reference op resolver (``BUILTIN_REF``);
- ``tflm``: the TFLM Python interpreter (``tflite-micro``), the kernels the MCU runs. It is the
  golden reference for everything on the firmware side;
- ``tflite-runtime``: the legacy ``tflite_runtime`` package (2.14, its last release, built
  against NumPy < 2), run in a worker process under its own cached environment
  (:mod:`lenet_edge.tflrt`), made on first use.
"""

from __future__ import annotations

import os
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export.sysutil import quiet_stderr
from lenet_edge.errors import LenetEdgeError, ModelFileError, first_line, unreadable_input
from lenet_edge.fsutil import sha256_bytes

BACKENDS = ("litert", "litert-ref", "tflm", "tflite-runtime")
GOLDEN_BACKEND = "tflm"
TFLITE_IDENTIFIER = b"TFL3"
#: Ops that do arithmetic with weights (their input 1 is the weight tensor, input 2 the bias).
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
_NP_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "bool": np.bool_,
}


# --------------------------------------------------------------------------------------------
# File validation and flatbuffer parsing
# --------------------------------------------------------------------------------------------


#: The whole content of each pipe, FIFO or character device read as a model (by path): such
#: a file can be read only once, and a model is examined before it is parsed.
_STREAMS: dict[str, bytes] = {}

#: The most a model read from a pipe may hold (LeNet .tflite files are ~60 KB).
MAX_STREAM_BYTES = 256 << 20


def _is_stream(path: Path) -> bool:
    """Whether ``path`` is a pipe, FIFO or device (``/dev/stdin``): readable once only."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ModelFileError(unreadable_input(path, exc)) from None
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _stream_bytes(path: Path) -> bytes:
    """Everything in the pipe at ``path``, read once and remembered."""
    key = os.fsdecode(os.path.abspath(path))
    if key not in _STREAMS:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_STREAM_BYTES + 1)
        except OSError as exc:
            raise ModelFileError(unreadable_input(path, exc)) from None
        if len(data) > MAX_STREAM_BYTES:
            raise ModelFileError(f"{path}: more than {MAX_STREAM_BYTES >> 20} MB; not a model")
        _STREAMS[key] = data
    return _STREAMS[key]


def read_model_bytes(path: Path) -> bytes:
    """The bytes of the model file at ``path``: a regular file, or a pipe (``/dev/stdin``, a
    FIFO), which is read once."""
    if _is_stream(path):
        return _stream_bytes(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(unreadable_input(path, exc)) from None


def sniff_model_file(path: Path) -> str:
    """The kind of model file at ``path`` from its first bytes: ``tflite``, ``keras`` (a zip,
    as Keras 3 writes), ``h5`` (legacy HDF5), ``savedmodel`` (a directory) or ``unknown``.

    Raises :class:`ModelFileError` when the path is missing, unreadable or empty. A pipe
    (``/dev/stdin``, a FIFO) is read whole, once (:func:`read_model_bytes`).
    """
    if _is_stream(path):
        head = _stream_bytes(path)[:8]
    elif path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelFileError(f"{path} is a directory, not a model file")
    else:
        try:
            with path.open("rb") as f:
                head = f.read(8)
        except OSError as exc:
            raise ModelFileError(unreadable_input(path, exc)) from None
    if not head:
        raise ModelFileError(f"{path}: empty file")
    if len(head) == 8 and head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if head[:4] == b"PK\x03\x04":
        return "keras"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "h5"
    return "unknown"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a ``.tflite`` graph."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    constant: bool = False

    @property
    def quantized(self) -> bool:
        """True when the tensor carries a scale (an affine-quantized tensor)."""
        return len(self.scales) > 0

    @property
    def scale(self) -> float:
        """The (first) scale; per-tensor quantized tensors have exactly one."""
        return float(self.scales[0]) if self.scales else 0.0

    @property
    def zero_point(self) -> int:
        """The (first) zero point."""
        return int(self.zero_points[0]) if self.zero_points else 0

    @property
    def np_dtype(self) -> Any:
        """The NumPy dtype of the tensor."""
        if self.dtype not in _NP_DTYPES:
            raise ModelFileError(f"tensor {self.name!r} has unsupported type {self.dtype}")
        return np.dtype(_NP_DTYPES[self.dtype])

    def as_dict(self) -> dict[str, Any]:
        """JSON form: name, shape, dtype, scale(s), zero point(s)."""
        return {
            "index": self.index,
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scales": [float(s) for s in self.scales],
            "zero_points": [int(z) for z in self.zero_points],
            "quantized_dimension": self.quantized_dimension if len(self.scales) > 1 else None,
            "constant": self.constant,
        }


@dataclass(frozen=True)
class OpInfo:
    """One operator: its name (``CONV_2D``, or ``CUSTOM(<code>)``) and tensor indices."""

    index: int
    name: str
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TfliteModel:
    """A parsed, verified ``.tflite`` flatbuffer (single subgraph, one input, one output)."""

    data: bytes
    source: str
    ops: tuple[OpInfo, ...]
    tensors: tuple[TensorInfo, ...]
    input_indices: tuple[int, ...]
    output_indices: tuple[int, ...]
    description: str
    _constants: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the flatbuffer bytes."""
        return sha256_bytes(self.data)

    @property
    def size(self) -> int:
        """Size of the flatbuffer in bytes."""
        return len(self.data)

    @property
    def op_names(self) -> list[str]:
        """Operator names in execution order."""
        return [op.name for op in self.ops]

    @property
    def input(self) -> TensorInfo:
        """The model input tensor."""
        return self.tensors[self.input_indices[0]]

    @property
    def output(self) -> TensorInfo:
        """The model output tensor."""
        return self.tensors[self.output_indices[0]]

    def constant(self, index: int) -> np.ndarray:
        """The value of a constant tensor (weights, biases, shapes)."""
        if index not in self._constants:
            raise KeyError(f"tensor {index} ({self.tensors[index].name}) is not a constant")
        return self._constants[index]

    def producer(self, tensor_index: int) -> OpInfo | None:
        """The op that writes ``tensor_index`` (None for graph inputs and constants)."""
        for op in self.ops:
            if tensor_index in op.outputs:
                return op
        return None

    @property
    def kind(self) -> str:
        """``int8`` (full integer), ``float32``, ``int16x8``, ``dynamic-range`` (int8 weights,
        float activations) or ``float16`` (float16 weights), from the weighted ops."""
        weights: set[str] = set()
        acts: set[str] = set()
        for op in self.ops:
            if op.name in WEIGHTED_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
                w = self.tensors[op.inputs[1]]
                if not w.constant:  # float16 weights pass through a DEQUANTIZE op
                    prod = self.producer(w.index)
                    if prod is not None and prod.name == "DEQUANTIZE":
                        w = self.tensors[prod.inputs[0]]
                weights.add(w.dtype)
                acts.add(self.tensors[op.inputs[0]].dtype)
        if not weights:
            return self.output.dtype if self.output.dtype == "float32" else "unknown"
        if acts == {"int8"} and weights == {"int8"}:
            return "int8"
        if acts == {"int16"}:
            return "int16x8"
        if acts == {"float32"} and weights == {"float32"}:
            return "float32"
        if acts == {"float32"} and weights == {"float16"}:
            return "float16"
        if acts == {"float32"} and weights <= {"int8", "float32"}:
            return "dynamic-range"
        return "mixed"

    @property
    def outputs_probabilities(self) -> bool:
        """True when the output comes from SOFTMAX (possibly through (DE)QUANTIZE ops)."""
        idx = self.output.index
        while True:
            op = self.producer(idx)
            if op is None:
                return False
            if op.name in ("QUANTIZE", "DEQUANTIZE"):
                idx = op.inputs[0]
                continue
            return op.name == "SOFTMAX"

    def summary(self) -> dict[str, Any]:
        """JSON form: size, SHA-256, op list, I/O and every tensor."""
        return {
            "size_bytes": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
            "ops": self.op_names,
            "op_versions": {op.name: op.version for op in self.ops},
            "input": self.input.as_dict(),
            "output": self.output.as_dict(),
            "tensors": [t.as_dict() for t in self.tensors],
        }


def _litert_verify(data: bytes, source: str) -> None:
    """Run LiteRT's flatbuffer verifier (and op resolution) on ``data``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        with quiet_stderr():
            Interpreter(
                model_content=data,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
    except ValueError as exc:
        raise ModelFileError(
            f"{source}: not a valid .tflite model ({first_line(exc, 1000)})"
        ) from None


def parse_tflite(data: bytes, source: str = "<bytes>") -> TfliteModel:
    """Parse and verify a ``.tflite`` flatbuffer. Raises :class:`ModelFileError` on anything
    that is not a complete, single-subgraph, one-input one-output TFLite model.

    The flatbuffer is decoded by :func:`firmware_export.reader.read_model`, the same typed
    graph that ``export-c`` works from; this adds LiteRT's verifier and the host-side view.
    """
    from firmware_export.errors import FirmwareExportError
    from firmware_export.reader import read_model

    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{source}: not a .tflite flatbuffer (no TFL3 identifier)")
    try:
        graph = read_model(data)
    except FirmwareExportError as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    _litert_verify(data, source)
    tensors = tuple(
        TensorInfo(
            t.index,
            t.name,
            t.shape,
            t.dtype.lower(),
            t.quant.scales if t.quant else (),
            (t.quant.zero_points or (0,)) if t.quant else (),
            t.quant.axis if t.quant else 0,
            t.is_const,
        )
        for t in graph.tensors
    )
    constants = {t.index: t.data for t in graph.tensors if t.data is not None}
    ops = tuple(OpInfo(op.index, op.kind, op.version, op.inputs, op.outputs) for op in graph.ops)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelFileError(
            f"{source}: {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; an image "
            "classifier with one input and one output is expected"
        )
    return TfliteModel(
        data=bytes(data),
        source=source,
        ops=ops,
        tensors=tensors,
        input_indices=graph.inputs,
        output_indices=graph.outputs,
        description=graph.description,
        _constants=constants,
    )


def check_tflite_file(path: str | Path) -> Path:
    """Refuse, with one line naming the file, anything at ``path`` that is not a ``.tflite``
    flatbuffer: a missing, unreadable or empty file, a Keras model, a SavedModel, junk."""
    p = Path(path)
    kind = sniff_model_file(p)
    if kind == "keras":
        raise ModelFileError(
            f"{p} is a Keras model (.keras zip), not a .tflite; convert it first "
            f"with `lenet-edge quantize {p} --out MODEL_int8.tflite`"
        )
    if kind == "h5":
        raise ModelFileError(
            f"{p} is a Keras HDF5 model, not a .tflite; convert it first with `lenet-edge quantize`"
        )
    if kind == "savedmodel":
        raise ModelFileError(f"{p} is a TensorFlow SavedModel directory, not a .tflite file")
    if kind != "tflite":
        raise ModelFileError(f"{p}: not a .tflite model (no TFL3 flatbuffer identifier)")
    return p


def read_tflite(path: str | Path) -> TfliteModel:
    """Read, verify and parse the ``.tflite`` file at ``path`` (one-line errors, no TF)."""
    p = check_tflite_file(path)
    return parse_tflite(read_model_bytes(p), str(p))


def check_keras_file(path: str | Path) -> Path:
    """Check, without TensorFlow, that ``path`` looks like a complete Keras model file."""
    p = Path(path)
    kind = sniff_model_file(p)
    if kind == "tflite":
        raise ModelFileError(
            f"{p} is a .tflite flatbuffer, not a Keras model; give the .keras "
            "file written by `lenet-edge train` (check a .tflite with "
            "`lenet-edge verify`)"
        )
    if kind != "keras" and kind != "h5":
        raise ModelFileError(f"{p}: not a Keras model (expected a .keras zip archive)")
    if _is_stream(p):
        raise ModelFileError(
            f"{p} is a pipe; a Keras model must be a regular file (give its path, not a pipe)"
        )
    if kind == "h5":
        return p
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ModelFileError(
            f"{p}: truncated or corrupted .keras archive; re-run `lenet-edge train`"
        ) from None
    if bad is not None:
        raise ModelFileError(f"{p}: corrupted .keras archive (member {bad} fails its CRC)")
    if "config.json" not in names:
        raise ModelFileError(f"{p}: zip archive without config.json, not a Keras model")
    return p


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """Raw outputs of one backend over N images."""

    backend: str
    outputs: np.ndarray  # [N, *output_shape[1:]] in the output tensor's dtype
    latency_us: np.ndarray  # per image: set input + invoke + read output, microseconds
    wall_seconds: float
    #: Backend-specific facts (tflite-runtime: its environment, worker start-up, max RSS).
    info: dict[str, Any] = field(default_factory=dict)

    def latency_stats(self) -> dict[str, float]:
        """Mean, median, p90, p99, min and max per-image latency (µs)."""
        lat = self.latency_us
        if lat.size == 0:
            return {}
        return {
            "mean_us": round(float(lat.mean()), 2),
            "median_us": round(float(np.median(lat)), 2),
            "p90_us": round(float(np.percentile(lat, 90)), 2),
            "p99_us": round(float(np.percentile(lat, 99)), 2),
            "min_us": round(float(lat.min()), 2),
            "max_us": round(float(lat.max()), 2),
        }


ProgressFn = Callable[[int], None]


class Runner:
    """A model loaded in one backend. ``run`` evaluates a batch of prepared inputs."""

    name = ""

    def invoke(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Run one input (with its batch dimension of 1); return the output tensor."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (a worker process); a no-op in process."""

    def run(self, inputs: np.ndarray, progress: ProgressFn | None = None) -> RunResult:
        """Run ``inputs`` (first axis = images) one at a time; time each call."""
        n = len(inputs)
        first = self.invoke(inputs[:1])
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        lat = np.empty(n, dtype=np.float64)
        clock = time.perf_counter_ns
        invoke = self.invoke
        step = 100
        start = time.perf_counter()
        for i in range(n):
            t0 = clock()
            y = invoke(inputs[i : i + 1])
            lat[i] = clock() - t0
            out[i] = y[0]
            if progress is not None and (i + 1) % step == 0:
                progress(step)
        wall = time.perf_counter() - start
        if progress is not None and n % step:
            progress(n % step)
        return RunResult(self.name, out, lat / 1000.0, wall)


class _TfliteInterpreterRunner(Runner):
    """Common code for the in-process TFLite-API interpreters (LiteRT)."""

    def __init__(self, interpreter: Any) -> None:
        self._it = interpreter
        with quiet_stderr():
            self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self._in_index = self._in["index"]
        self._out_index = self._out["index"]
        self._in_dtype = self._in["dtype"]

    def invoke(self, x: np.ndarray) -> np.ndarray:
        it = self._it
        it.set_tensor(self._in_index, np.ascontiguousarray(x, dtype=self._in_dtype))
        it.invoke()
        return np.array(it.get_tensor(self._out_index), copy=True)


class LiteRTRunner(_TfliteInterpreterRunner):
    """``ai_edge_litert``: default kernels + XNNPACK (``reference=False``) or the reference
    kernels (``reference=True``). One thread: fastest for a model this small, and the MCU has
    one core."""

    def __init__(self, model_bytes: bytes, reference: bool = False, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.name = "litert-ref" if reference else "litert"
        resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
        try:
            with quiet_stderr():
                it = Interpreter(
                    model_content=bytes(model_bytes),
                    num_threads=num_threads,
                    experimental_op_resolver_type=resolver,
                )
            super().__init__(it)
        except (ValueError, RuntimeError) as exc:
            raise LenetEdgeError(f"{self.name} cannot load the model: {first_line(exc)}") from None


class TfliteRuntimeRunner(Runner):
    """The legacy ``tflite_runtime`` package (2.14, default kernels with XNNPACK, one thread),
    run in a worker process under its own NumPy 1.x environment (:mod:`lenet_edge.tflrt`)."""

    name = "tflite-runtime"

    def __init__(self, model_bytes: bytes, quiet: bool = True) -> None:
        from lenet_edge.tflrt import Worker, ensure_python

        # tflite_runtime 2.14 does not verify the flatbuffer (a malformed one can crash it):
        # LiteRT's verifier refuses it first, with one line.
        _litert_verify(bytes(model_bytes), "the model")
        self.setup = ensure_python(quiet=quiet)
        self._w = Worker(self.setup["python"], model_bytes)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        return self._w.run(x)[0].reshape((1, *self._w.out_shape[1:]))

    def run(self, inputs: np.ndarray, progress: ProgressFn | None = None) -> RunResult:
        """Send ``inputs`` to the worker in batches; the latencies are timed in the worker."""
        from lenet_edge.tflrt import BATCH

        outs, lats = [], []
        start = time.perf_counter()
        for i in range(0, len(inputs), BATCH):
            y, lat = self._w.run(inputs[i : i + BATCH])
            outs.append(y)
            lats.append(lat)
            if progress is not None:
                progress(len(y))
        wall = time.perf_counter() - start
        stats = self._w.finish()
        out = np.concatenate(outs) if outs else np.empty((0, *self._w.out_shape[1:]))
        hello = self._w.hello
        info = {
            "tflite_runtime": hello.get("tflite_runtime"),
            "numpy": hello.get("numpy"),
            "python_version": hello.get("python"),
            "python": self.setup["python"],
            "environment": self.setup["env"],
            "environment_created": self.setup["created"],
            "setup_seconds": self.setup["setup_seconds"],
            "worker_start_seconds": self._w.start_seconds,
            "worker_max_rss_kib": stats.get("max_rss_kib"),
        }
        return RunResult(self.name, out, np.concatenate(lats) if lats else np.empty(0), wall, info)

    def close(self) -> None:
        self._w.close()


class TflmRunner(Runner):
    """The TFLM Python interpreter (``tflite-micro``): the kernels the MCU runs."""

    name = "tflm"

    def __init__(self, model_bytes: bytes) -> None:
        from firmware_export.errors import FirmwareExportError
        from firmware_export.tflm import TflmModel

        try:
            self._m = TflmModel(bytes(model_bytes))
        except FirmwareExportError as exc:
            raise LenetEdgeError(str(exc)) from None

    def invoke(self, x: np.ndarray) -> np.ndarray:
        return self._m.invoke(x)


def backend_unavailable_reason(name: str, quiet: bool = True) -> str | None:
    """None when backend ``name`` can be used here, else a one-line reason. For
    ``tflite-runtime`` this makes its cached environment when it is missing (progress on
    stderr unless ``quiet``)."""
    if name == "tflite-runtime":
        from lenet_edge.tflrt import ensure_python

        try:
            ensure_python(quiet=quiet)
        except LenetEdgeError as exc:
            return str(exc)
    return None


def open_backend(name: str, model_bytes: bytes, quiet: bool = True) -> Runner:
    """Load ``model_bytes`` into backend ``name`` (one of :data:`BACKENDS`)."""
    if name == "litert":
        return LiteRTRunner(model_bytes)
    if name == "litert-ref":
        return LiteRTRunner(model_bytes, reference=True)
    if name == "tflm":
        return TflmRunner(model_bytes)
    if name == "tflite-runtime":
        return TfliteRuntimeRunner(model_bytes, quiet=quiet)
    raise LenetEdgeError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def run_backend(
    name: str,
    model_bytes: bytes,
    inputs: np.ndarray,
    progress: ProgressFn | None = None,
    quiet: bool = True,
) -> RunResult:
    """Run ``inputs`` (prepared for the model's input tensor) through backend ``name``."""
    runner = open_backend(name, model_bytes, quiet=quiet)
    try:
        return runner.run(inputs, progress)
    finally:
        runner.close()


def tflm_min_arena(model_bytes: bytes) -> dict[str, Any]:
    """The smallest TFLM arena the model allocates and runs in, on this host.

    The search (in ``firmware_export.tflm.min_arena_size``) tries ``arena_size`` values until
    allocation and invoke succeed. The figure is for this host's ABI (x86-64: 8-byte pointers
    in TFLM's persistent structures); a 32-bit Cortex-M build needs somewhat less.
    """
    import platform

    from firmware_export.errors import FirmwareExportError
    from firmware_export.tflm import min_arena_size

    machine = platform.machine() or "unknown"
    try:
        size = min_arena_size(bytes(model_bytes))
    except FirmwareExportError as exc:
        return {"bytes": None, "host": machine, "error": str(exc)}
    return {
        "bytes": int(size),
        "host": machine,
        "note": f"minimum TFLM arena measured with the TFLM Python interpreter on {machine}; "
        "a 32-bit Cortex-M build uses 4-byte pointers and needs somewhat less",
    }
