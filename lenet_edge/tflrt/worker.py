"""The tflite-runtime worker: runs one model for the parent ``lenet-edge`` process.

It runs under the Python of the tflite-runtime environment (``python -I worker.py``) and
imports only the standard library, NumPy (< 2) and ``tflite_runtime``: never ``lenet_edge``.

Protocol on stdin / stdout. Every frame is one kind byte, an unsigned 64-bit little-endian
payload length, then the payload:

- worker -> parent, at start: ``H`` JSON ``{"tflite_runtime": ..., "numpy": ..., "python": ...}``;
- parent -> worker ``M`` (the ``.tflite`` bytes) -> ``I`` JSON ``{"input": {"shape", "dtype"},
  "output": {...}}``;
- parent -> worker ``B`` (whole input tensors, batch 1 each, C order, back to back) -> ``O``:
  uint32 ``n``, the ``n`` output tensors' bytes, then ``n`` float64 per-image latencies in µs
  (set input + invoke + read output, as the in-process backends measure);
- parent -> worker ``Q`` -> ``S`` JSON ``{"max_rss_kib": ...}`` (peak resident set, VmHWM),
  then the worker exits 0;
- ``E`` one-line error message, from the worker, on any failure; the worker then exits 1.

End of input (the parent went away) ends the worker silently.
"""

import json
import os
import resource
import signal
import struct
import sys
import time

HEADER = struct.Struct("<cQ")


def _read_exact(fd, n):
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _send(out, kind, payload=b""):
    out.write(HEADER.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def _peak_rss_kib():
    """This process's peak resident set (KiB): VmHWM, which starts afresh at exec. (On Linux
    ru_maxrss does not: a child started with vfork inherits the parent's high-water mark.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    # The protocol owns the real stdout; anything printed by libraries goes to stderr.
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = 0
    try:
        import numpy as np
        from tflite_runtime import __version__ as tflrt_version
        from tflite_runtime.interpreter import Interpreter
    except Exception as exc:  # reported to the parent as one line
        _send(proto, b"E", f"cannot import tflite_runtime: {_one_line(exc)}".encode())
        return 1
    hello = {
        "tflite_runtime": tflrt_version,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    _send(proto, b"H", json.dumps(hello).encode())
    it = None
    while True:
        head = _read_exact(inp, HEADER.size)
        if head is None:
            return 0
        kind, size = HEADER.unpack(head)
        payload = _read_exact(inp, size)
        if payload is None:
            return 0
        try:
            if kind == b"M":
                it = Interpreter(model_content=payload, num_threads=1)
                it.allocate_tensors()
                i_det = it.get_input_details()
                o_det = it.get_output_details()
                if len(i_det) != 1 or len(o_det) != 1:
                    raise ValueError(
                        f"{len(i_det)} inputs and {len(o_det)} outputs; one of each is expected"
                    )
                i_det, o_det = i_det[0], o_det[0]
                i_idx, o_idx = i_det["index"], o_det["index"]
                i_shape, i_dtype = tuple(int(d) for d in i_det["shape"]), np.dtype(i_det["dtype"])
                o_shape, o_dtype = tuple(int(d) for d in o_det["shape"]), np.dtype(o_det["dtype"])
                info = {
                    "input": {"shape": list(i_shape), "dtype": i_dtype.name},
                    "output": {"shape": list(o_shape), "dtype": o_dtype.name},
                }
                _send(proto, b"I", json.dumps(info).encode())
            elif kind == b"B":
                if it is None:
                    raise ValueError("a batch came before the model")
                per = int(np.prod(i_shape)) * i_dtype.itemsize
                if per == 0 or size % per:
                    raise ValueError(f"batch of {size} bytes is not whole inputs of {per} bytes")
                n = size // per
                x = np.frombuffer(payload, dtype=i_dtype).reshape((n, *i_shape))
                outs = np.empty((n, *o_shape), dtype=o_dtype)
                lat = np.empty(n, dtype="<f8")
                clock = time.perf_counter_ns
                set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor
                for k in range(n):
                    t0 = clock()
                    set_tensor(i_idx, x[k])
                    invoke()
                    outs[k] = get_tensor(o_idx)
                    lat[k] = clock() - t0
                lat /= 1000.0
                _send(proto, b"O", struct.pack("<I", n) + outs.tobytes() + lat.tobytes())
            elif kind == b"Q":
                _send(proto, b"S", json.dumps({"max_rss_kib": _peak_rss_kib()}).encode())
                return 0
            else:
                raise ValueError(f"unknown frame kind {kind!r}")
        except Exception as exc:  # reported to the parent as one line
            _send(proto, b"E", _one_line(exc).encode())
            return 1


if __name__ == "__main__":
    sys.exit(main())
