"""Golden tests for the small emitter pieces, and the plan's structural guarantees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from firmware_export import csyntax
from firmware_export.csyntax import Names, banner, c_float, c_int, c_values, check_prefix, render
from firmware_export.emit.standalone import Array, StandaloneWriter
from firmware_export.emit.tflm import Arena
from firmware_export.errors import FirmwareExportError
from firmware_export.plan import (
    ARENA_ALIGN,
    ConvStep,
    Plan,
    PoolSpec,
    Table,
    build_plan,
    weight_bytes,
)
from firmware_export.reader import load_graph


def test_c_values_golden() -> None:
    assert c_values([1, -22, 333], per_line=2) == "      1, -22,\n    333"
    assert c_values([]) == "    0"
    assert c_values([-(1 << 31), 5], per_line=8) == ("    (-2147483647 - 1),                 5")


def test_c_literals_golden() -> None:
    assert c_float(0.003921569) == "0.00392156886f"
    assert c_float(1 / 256) == "0.00390625f"
    assert c_float(2.0) == "2.0f"
    assert c_float(1e-10) == "1.00000001e-10f"
    assert np.float32(float(c_float(0.1234567)[:-1])) == np.float32(0.1234567)
    assert c_int(-(1 << 31)) == "(-2147483647 - 1)"
    assert c_int(7) == "7"


def test_banner_golden() -> None:
    assert banner(["a", "b c"]) == "/*\n * a\n * b c\n */"
    assert banner(["a", ""], style="hash") == "# a\n#"


def test_array_render_golden() -> None:
    arr = Array("int8_t", "lenet_x", [1, -2, 3], "x [3]")
    text = render(
        "weights.c.j2", banner="/* b */", p="lenet", P="LENET", arrays=[arr.as_context()], align=16
    )
    assert text == (
        "/* b */\n"
        "/**\n * @file lenet_weights.c\n"
        " * @brief Constant model data, pre-arranged for the kernels at export time.\n */\n"
        '#include "lenet_weights.h"\n'
        "\n/* x [3] */\n"
        "LENET_ALIGN(16) const int8_t lenet_x[3] = {\n"
        "     1, -2,  3\n"
        "};\n"
    )


def test_table_c_order_golden() -> None:
    t = Table(list(range(-128, 128)), ["ID"])
    order = t.c_order()
    assert order[0] == 0 and order[127] == 127 and order[128] == -128 and order[255] == -1
    neg = Table([-v - 1 for v in range(-128, 128)], ["NOT"])
    assert t.then(neg).values == neg.values and t.then(neg).ops == ["ID", "NOT"]


def test_pool_initializer_golden() -> None:
    w = StandaloneWriter.__new__(StandaloneWriter)
    w.n = Names("net")
    assert w.pool_init(None) == "{ NET_POOL_NONE, 1, 1, 1, 1, 0, 0, 0, 0, -128, 127 }"
    spec = PoolSpec("avg", 2, 2, 2, 2, 0, 1, 14, 14, -128, 127)
    assert w.pool_init(spec) == "{ NET_POOL_AVG, 2, 2, 2, 2, 0, 1, 14, 14, -128, 127 }"


def test_arena_margin() -> None:
    assert (Arena(14368, "x").margin, Arena(14368, "x").size) == (1440, 15808)
    assert (Arena(1000, "x").margin, Arena(1000, "x").size) == (512, 1520)


@pytest.mark.parametrize("prefix", ["lenet", "digits", "MyNet2", "m", "net_v2"])
def test_prefix_accepted(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix,why",
    [
        ("", "C identifier"),
        ("2net", "C identifier"),
        ("my-net", "C identifier"),
        ("_net", "C identifier"),
        ("a" * 33, "C identifier"),
        ("net_", "must not end"),
        ("my__net", "must not end"),
        ("int", "keyword"),
        ("class", "keyword"),
        ("memory", "reserved"),
        ("strong", "reserved"),
        ("total", "reserved"),
        ("isnet", "reserved"),
        ("E2", "reserved"),
        ("SIGNAL", "reserved"),
    ],
)
def test_prefix_rejected(prefix: str, why: str) -> None:
    with pytest.raises(FirmwareExportError, match=why):
        check_prefix(prefix)


def test_names_registry() -> None:
    n = Names("net")
    assert n("infer") == "net_infer" and n.macro("ok") == "NET_OK"
    assert n.emitted == ["net_infer", "NET_OK"]
    assert csyntax.reserved_reason("and_eq") == "a C++ keyword"
    assert csyntax.reserved_reason("INT8_MAX") is not None
    assert csyntax.reserved_reason("net_infer") is None


# ----------------------------------------------------------------------------- the plan


def _regions(plan: Plan) -> list[tuple[int, int, int, int, object]]:
    """(offset, size, first step, last step, owner) of everything placed in the arena."""
    out: list[tuple[int, int, int, int, object]] = []
    for b in plan.buffers:
        if b.location == "arena":
            out.append((b.offset, b.size, b.first, b.last, b))
    for i, st in enumerate(plan.steps):
        if st.scratch:
            out.append((st.scratch_offset, st.scratch, i, i, st))
    return out


def _overwrites_live_input(step: Any) -> bool:
    """Whether a convolution's output, where the plan put it, ever overwrites an input byte
    the layer reads later. A tile convolution's block row ``by`` writes output rows up to
    ``by`` (pooled; conv rows up to ``2 by + 1`` without pooling) while its fills read input
    rows from ``2 by - pad_top`` on; the generic kernel writes pooled row ``py`` while it
    reads the input rows of that row's first pooling window on."""
    src, dst, tp, q = step.src, step.dst, step.tile, step.pool
    out_row, in_row = step.out_w * step.out_c, step.in_w * step.in_c
    rows: list[tuple[int, int]] = []  # (output bytes written so far, first input row read)
    if tp is not None:
        rows_out = 1 if q is not None else 2
        rows = [((by + 1) * rows_out * out_row, 2 * by - step.pad_top) for by in range(tp.blocks_h)]
    else:
        assert q is not None, "the generic kernel overlaps only with a fused pooling"
        for py in range(q.out_h):
            conv_row = max(0, py * q.stride_h - q.pad_top)
            rows.append(((py + 1) * out_row, conv_row * step.stride_h - step.pad_top))
    for written, first_row in rows:
        written_end = dst.offset + written
        read_start = src.offset + max(0, first_row) * in_row
        if written_end > read_start and dst.offset < src.offset + src.size:
            return True
    return False


@pytest.mark.parametrize("optimize", ["speed", "size"])
@pytest.mark.parametrize("variant", [{}, {"activation": "relu"}, {"pooling": "max"}])
def test_memory_plan_never_overlaps_live_data(
    int8_model: Any, variant: dict[str, str], optimize: str
) -> None:
    """Live buffers never share bytes, except a convolution's output that starts over its
    dying input: then no output row may reach an input row the layer still reads."""
    plan = build_plan(load_graph(int8_model(**variant).read_bytes()), optimize)
    regions = _regions(plan)
    overlapped = 0
    for i, (o1, s1, f1, l1, w1) in enumerate(regions):
        assert o1 % ARENA_ALIGN == 0 and o1 + s1 <= plan.arena_size
        for o2, s2, f2, l2, w2 in regions[i + 1 :]:
            if l1 < f2 or l2 < f1:
                continue  # not alive at the same time
            if o1 + s1 <= o2 or o2 + s2 <= o1:
                continue
            step = next(
                (st for st in plan.steps if {id(st.src), id(st.dst)} == {id(w1), id(w2)}), None
            )
            assert isinstance(step, ConvStep), (w1, w2)
            assert (step.tile is not None) == (optimize == "speed"), (w1, w2)
            assert step.src.last == step.dst.first == plan.steps.index(step), (w1, w2)
            assert not _overwrites_live_input(step), (w1, w2)
            overlapped += 1
    # The seed-style models' second convolution (C3 -> S4) starts 80 bytes before its input.
    assert overlapped == 1
    # Every step reads a buffer written earlier (or the input) and nothing reads the output
    # before it is written.
    for i, st in enumerate(plan.steps):
        assert st.src.location == "input" or st.src.first <= i
    assert plan.steps[-1].dst.location == "output"


def test_optimize_size_meets_the_size_targets(int8_model: Any) -> None:
    """Issue 12's size targets on the seed model, met by --optimize size: scratch <= 1,700 B
    (the C1/S2 and C3/S4 outputs alone take 1,576 B), weights and tables <= 64,000 B. The
    speed plan keeps its tile convolutions and tabled exp and takes more of both."""
    graph = load_graph(int8_model().read_bytes())
    size, speed = build_plan(graph, "size"), build_plan(graph, "speed")
    assert size.scratch_size <= 1700 < speed.scratch_size
    assert sum(weight_bytes(size).values()) <= 64_000 < sum(weight_bytes(speed).values())
    assert size.macs == speed.macs == 326_520
    assert [st.kind for st in size.steps] == [st.kind for st in speed.steps]
    with pytest.raises(FirmwareExportError, match="--optimize 'tiny'"):
        build_plan(graph, "tiny")


def test_seed_plan_fusions_and_in_place(int8_model: Any) -> None:
    plan = build_plan(load_graph(int8_model().read_bytes()))
    assert plan.arena_size <= 2560
    softmax = plan.steps[-1]
    assert softmax.kind == "softmax" and softmax.in_place and softmax.src.location == "output"
    assert [len(st.ops) for st in plan.steps] == [3, 3, 2, 2, 1, 1]
    assert plan.macs == 326_520 and plan.tflm_macs == 416_520


def test_dead_ops_are_pruned(int8_model: Any) -> None:
    from tests.support.tflite_build import retarget_output

    data = int8_model().read_bytes()
    graph = load_graph(data)
    conv = graph.ops[0]
    plan = build_plan(load_graph(retarget_output(data, conv.outputs[0])))
    assert len(plan.steps) == 1 and plan.steps[0].kind == "conv"
    assert plan.steps[0].table is None and plan.steps[0].pool is None  # type: ignore[attr-defined]
    assert len(plan.dead_ops) == len(graph.ops) - 1


def test_weight_bytes_match_the_emitted_arrays(int8_model: Any) -> None:
    """export.json's weight_bytes are the bytes of the arrays every build compiles (the x86
    SIMD path's extra arrays, under their #if, are not counted)."""
    import re

    for variant, optimize in (({}, "speed"), ({"activation": "relu"}, "speed"), ({}, "size")):
        graph = load_graph(int8_model(**variant).read_bytes())
        plan = build_plan(graph, optimize)
        files = StandaloneWriter(plan, "lenet", "/* t */", None).render(
            {op.index: op.kind for op in graph.ops}
        )
        text = re.sub(
            r"#if LENET_X86_WEIGHTS\n.*?#endif\n", "", files["lenet_weights.c"], flags=re.S
        )
        sizes = {"int8_t": 1, "uint8_t": 1, "uint16_t": 2, "int32_t": 4}
        emitted = sum(
            sizes[t] * int(n) for t, n in re.findall(r"const (\w+) lenet_\w+\[(\d+)\]", text)
        )
        assert emitted == sum(weight_bytes(plan).values())
