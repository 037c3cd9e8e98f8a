"""Structure-aware mutation of a real ``.tflite`` and the export pipeline as the fuzz target.

Used by ``tests/test_fuzz_reader.py`` (hypothesis, short) and ``scripts/fuzz_reader.py`` (the
long run). A mutation plan is a list of integer tuples; :func:`mutate` interprets it on the
seed model, so hypothesis and the script's seeded random generator drive the same mutations:

* bit flips and "interesting" bytes anywhere (most of the file is weight data);
* structural edits at sites found by walking the seed flatbuffer with the TFLite schema
  layout: the root offset, every table's vtable offset, every vtable's size and field
  entries, every offset field, every vector and string length, scalar fields (tensor type,
  buffer index, opcode index, builtin codes, option fields, buffer offset/size) and vector
  elements (tensor shapes, op and subgraph tensor indices, quantization scales and zero
  points), set to values chosen to break them (0, -1, +-1, the file size, huge, random);
* truncation, byte insertion and deletion (shifting every later offset), chunk copies.

:func:`run_case` runs one mutated model through ``read_model`` -> ``check_graph`` ->
``build_plan`` -> the C writer and, when asked, the whole ``export_model`` (TFLM included).
It returns the outcome label; any exception other than ``FirmwareExportError`` propagates:
that is a bug.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

#: One mutation: (operator selector, site selector, value selector, extra).
Step = tuple[int, int, int, int]
Plan = Sequence[Step]

# Field kinds per table, by field index (vtable slot): "u8"/"i8"/"i32"/"u32"/"u64"/"bool"
# scalars, "str", ("vec", elem) scalar vectors, ("tabvec", table) vectors of tables,
# ("tab", table) sub-tables. Tables not listed are walked generically.
_SCHEMA: dict[str, dict[int, object]] = {
    "Model": {
        0: "u32",
        1: ("tabvec", "OperatorCode"),
        2: ("tabvec", "SubGraph"),
        3: "str",
        4: ("tabvec", "Buffer"),
        5: ("vec", "i32"),
        6: ("tabvec", "Metadata"),
        7: ("tabvec", "SignatureDef"),
    },
    "OperatorCode": {0: "i8", 1: "str", 2: "i32", 3: "i32"},
    "SubGraph": {
        0: ("tabvec", "Tensor"),
        1: ("vec", "i32"),
        2: ("vec", "i32"),
        3: ("tabvec", "Operator"),
        4: "str",
    },
    "Tensor": {
        0: ("vec", "i32"),
        1: "i8",
        2: "u32",
        3: "str",
        4: ("tab", "Quantization"),
        5: "bool",
        6: ("tab", "?"),
        7: ("vec", "i32"),
        8: "bool",
    },
    "Operator": {
        0: "u32",
        1: ("vec", "i32"),
        2: ("vec", "i32"),
        3: "u8",
        4: ("tab", "?"),
        5: ("vec", "u8"),
        6: "i8",
        7: ("vec", "bool"),
        8: ("vec", "i32"),
    },
    "Buffer": {0: ("vec", "u8"), 1: "u64", 2: "u64"},
    "Quantization": {
        0: ("vec", "f32"),
        1: ("vec", "f32"),
        2: ("vec", "f32"),
        3: ("vec", "i64"),
        4: "u8",
        5: ("tab", "?"),
        6: "i32",
    },
    "Metadata": {0: "str", 1: "u32"},
    "SignatureDef": {0: ("tabvec", "TensorMap"), 1: ("tabvec", "TensorMap"), 2: "str", 3: "u32"},
    "TensorMap": {0: "str", 1: "u32"},
}
_WIDTH = {"u8": 1, "i8": 1, "bool": 1, "i32": 4, "u32": 4, "f32": 4, "u64": 8, "i64": 8}
#: Vector elements are listed as sites only up to this many per vector (weights are bytes).
_MAX_ELEMS = 16


@dataclass(frozen=True)
class Site:
    """A place in the seed flatbuffer worth breaking."""

    pos: int
    width: int  # bytes
    kind: str  # root, soffset, vtsize, objsize, vtentry, uoffset, len, scalar, elem
    what: str  # e.g. "Tensor.shape[2]"
    floating: bool = False


def _u16(b: bytes, p: int) -> int:
    return int(struct.unpack_from("<H", b, p)[0])


def _u32(b: bytes, p: int) -> int:
    return int(struct.unpack_from("<I", b, p)[0])


def _i32(b: bytes, p: int) -> int:
    return int(struct.unpack_from("<i", b, p)[0])


def find_sites(model: bytes) -> list[Site]:
    """Walk the seed flatbuffer and list its structural sites (each table visited once)."""
    sites: list[Site] = [Site(0, 4, "root", "root offset")]
    seen: set[int] = set()

    def table(pos: int, name: str) -> None:
        if pos in seen or not 0 <= pos <= len(model) - 4:
            return
        seen.add(pos)
        vt = pos - _i32(model, pos)
        sites.append(Site(pos, 4, "soffset", f"{name} vtable offset"))
        if not 0 <= vt <= len(model) - 4:
            return
        vt_size, obj_size = _u16(model, vt), _u16(model, vt + 2)
        sites.append(Site(vt, 2, "vtsize", f"{name} vtable size"))
        sites.append(Site(vt + 2, 2, "objsize", f"{name} object size"))
        fields = _SCHEMA.get(name, {})
        slots = [(i, _u16(model, vt + 4 + 2 * i)) for i in range((vt_size - 4) // 2)]
        present = sorted(off for _, off in slots if off)
        for i, off in slots:
            sites.append(Site(vt + 4 + 2 * i, 2, "vtentry", f"{name} field {i} slot"))
            if off == 0:
                continue
            loc = pos + off
            kind = fields.get(i)
            if kind is None:  # unknown field: a scalar of the width up to the next field
                nxt = next((o for o in present if o > off), obj_size)
                width = 4 if nxt - off >= 4 and loc % 4 == 0 else 1
                sites.append(Site(loc, width, "scalar", f"{name} field {i}"))
                continue
            if isinstance(kind, str) and kind != "str":
                sites.append(Site(loc, _WIDTH[kind], "scalar", f"{name} field {i} ({kind})"))
                continue
            sites.append(Site(loc, 4, "uoffset", f"{name} field {i} offset"))
            target = loc + _u32(model, loc)
            if not 0 <= target <= len(model) - 4:
                continue
            if kind == "str":
                sites.append(Site(target, 4, "len", f"{name} field {i} string length"))
                continue
            assert isinstance(kind, tuple)
            how, what = kind
            if how == "tab":
                table(target, str(what))
                continue
            n = _u32(model, target)
            sites.append(Site(target, 4, "len", f"{name} field {i} vector length"))
            if how == "tabvec":
                for j in range(min(n, 4096)):
                    el = target + 4 + 4 * j
                    if el > len(model) - 4:
                        break
                    sites.append(Site(el, 4, "uoffset", f"{what}[{j}] offset"))
                    table(el + _u32(model, el), str(what))
            else:
                w = _WIDTH[str(what)]
                for j in range(min(n, _MAX_ELEMS)):
                    el = target + 4 + w * j
                    if el + w <= len(model):
                        sites.append(
                            Site(el, w, "elem", f"{name} field {i}[{j}]", floating=what == "f32")
                        )

    table(_u32(model, 0), "Model")
    return sites


_FLOATS = (
    float("nan"),
    float("inf"),
    float("-inf"),
    0.0,
    -0.0,
    -1.0,
    1e-45,
    1e-38,
    3.4e38,
    1e-20,
    1e20,
    0.5,
)


def _new_value(orig: int, width: int, size: int, v: int, extra: int) -> int:
    top = 1 << (8 * width)
    choices = [
        0,
        1,
        top - 1,  # -1
        orig + 1,
        orig - 1,
        orig * 2,
        orig // 2,
        size,
        size - orig,
        orig + size,
        (top >> 1) - 1,  # INT_MAX
        top >> 1,  # INT_MIN
        extra % max(size, 1),
        extra,
        orig + 4 * ((extra % 64) - 32),
        orig ^ (1 << (extra % (8 * width))),
        65535,
        2,
        orig + 4096,
        -orig,
    ]
    return choices[v % len(choices)] % top


def _put(buf: bytearray, pos: int, width: int, value: int) -> None:
    buf[pos : pos + width] = (value % (1 << (8 * width))).to_bytes(width, "little")


def mutate(seed: bytes, sites: Sequence[Site], plan: Plan) -> bytes:
    """Apply ``plan`` to ``seed`` (truncation, if any, last)."""
    buf = bytearray(seed)
    cut: int | None = None
    for op, s, v, extra in plan:
        op %= 100
        n = len(buf)
        if n == 0:
            break
        if op < 50:  # a structural site
            site = sites[s % len(sites)]
            if site.pos + site.width > n:
                continue
            if site.floating and v % 3 == 0:
                f = _FLOATS[extra % len(_FLOATS)]
                buf[site.pos : site.pos + 4] = struct.pack("<f", f)
                continue
            orig = int.from_bytes(buf[site.pos : site.pos + site.width], "little")
            _put(buf, site.pos, site.width, _new_value(orig, site.width, n, v, extra))
        elif op < 72:  # bit flips anywhere
            for k in range(1 + v % 8):
                bit = (s + k * (extra | 1) * 7919) % (8 * n)
                buf[bit // 8] ^= 1 << (bit % 8)
        elif op < 80:  # an interesting byte anywhere
            buf[s % n] = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE)[v % 6]
        elif op < 85:  # a 32-bit word anywhere (aligned), set to a breaking value
            pos = (s % max(n // 4, 1)) * 4
            if pos + 4 <= n:
                orig = int.from_bytes(buf[pos : pos + 4], "little")
                _put(buf, pos, 4, _new_value(orig, 4, n, v, extra))
        elif op < 90:  # insert or delete bytes (every later offset shifts)
            pos = s % n
            k = 1 + v % 16
            if extra % 2:
                del buf[pos : pos + k]
            else:
                buf[pos:pos] = bytes((extra >> 8) % 256 for _ in range(k))
        elif op < 94:  # copy a chunk over another place
            length = 1 + v % 64
            src, dst = s % n, extra % n
            chunk = bytes(buf[src : src + length])
            buf[dst : dst + len(chunk)] = chunk
        else:  # truncate (applied at the end)
            choices = (s % n, n - 1 - v % 16, n // 2, 4, 8, 16 + v % 256)
            cut = max(0, min(n, choices[extra % len(choices)]))
    if cut is not None:
        del buf[cut:]
    return bytes(buf)


def random_plan(rng: random.Random) -> list[Step]:
    """1 to 4 mutations (mostly one or two), drawn from ``rng``."""
    r = rng.random()
    n = 1 if r < 0.6 else 2 if r < 0.85 else rng.randint(3, 4)
    return [
        (rng.randrange(100), rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32))
        for _ in range(n)
    ]


# ----------------------------------------------------------------------------- the target


def _label(msg: str) -> str:
    """A stable bucket for an error message: its first words, numbers and names removed."""
    msg = re.sub(r"'[^']*'", "'…'", msg)
    msg = re.sub(r"(?<![\w.])-?\d+(\.\d+)?(e[-+]?\d+)?(?!\w)", "N", msg)
    msg = re.sub(r"\[[^\]]*\]", "[…]", msg)
    msg = msg.removeprefix("cannot export this model: ")
    words = msg.split()
    return " ".join(words[:7])


def run_case(model: bytes, export: bool = False, vectors: int = 2, render: bool = True) -> str:
    """Run one model through the export pipeline; return ``stage: outcome``.

    ``render`` runs the C writer on an accepted plan, ``export`` (which implies it) the whole
    ``export_model`` with TFLM. ``FirmwareExportError`` at any stage is a clean refusal; any
    other exception propagates.
    """
    from firmware_export.checks import check_graph
    from firmware_export.emit.standalone import StandaloneWriter
    from firmware_export.errors import FirmwareExportError
    from firmware_export.export import export_model
    from firmware_export.mnist import mnist_input
    from firmware_export.plan import build_plan
    from firmware_export.reader import read_model

    stage = "read"
    try:
        graph = read_model(model)
        stage = "check"
        problems = check_graph(graph)
        if problems:
            return "refused at check: " + _label(problems[0])
        stage = "plan"
        plan = build_plan(graph)
        if not (render or export):
            return "accepted: planned"
        stage = "render"
        mnist = mnist_input(plan.input.shape, plan.input.scale, plan.input.zero_point)
        files = StandaloneWriter(plan, "lenet", "/* fuzz */", mnist).render(
            {op.index: op.kind for op in graph.ops}
        )
        if not files:
            raise AssertionError("the C writer returned no files")
        if not export:
            return "accepted: planned and rendered"
        stage = "export"
        result = export_model(model, n_vectors=vectors)
        if "export.json" in result.files or not result.files:
            raise AssertionError("export_model returned an incomplete file set")
        return "accepted: exported (TFLM included)"
    except FirmwareExportError as exc:
        return f"refused at {stage}: {_label(str(exc))}"


def memoize_pure_math() -> None:
    """Cache TFLM's int8 LOGISTIC/TANH reference functions (pure: the same arguments give the
    same value) for the long run: mutated models mostly keep their scales, and recomputing
    those 256-entry tables dominates the plan stage. Results are unchanged."""
    import functools

    from firmware_export import quantmath

    for name in ("logistic_int8", "tanh_int8"):
        fn = getattr(quantmath, name)
        if not hasattr(fn, "cache_info"):
            setattr(quantmath, name, functools.lru_cache(maxsize=1 << 16)(fn))
