"""Fuzzing firmware_export's .tflite reader: the short run of the default suite.

The long run (100,000 cases and more) is ``python scripts/fuzz_reader.py`` (``make
fuzz-reader``); both drive the same structure-aware mutations of a real LeNet .tflite
(lenet_edge/fuzz/tflite_mutate.py) through read_model -> check_graph -> build_plan -> the C
writer and, for a sample, the whole export with TFLM. Each case must end in
FirmwareExportError or succeed.

The regression tests at the end are the bugs the fuzzer found, each of which used to end in
another exception (IndexError, ZeroDivisionError, AttributeError, ValueError) or a crash of
TFLM (a segfault, a hang) and now ends in one line naming the problem.
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as s
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_export.errors import FirmwareExportError
from firmware_export.reader import load_graph
from lenet_edge.fuzz.runner import run_campaign
from lenet_edge.fuzz.tflite_mutate import find_sites, mutate, random_plan, run_case
from tests.support.tflite_build import edit_model, pack


@pytest.fixture(scope="module")
def seed(int8_model: Any) -> tuple[bytes, list[Any]]:
    data = Path(int8_model()).read_bytes()
    return data, find_sites(data)


def test_sites_cover_the_structure(seed: tuple[bytes, list[Any]]) -> None:
    data, sites = seed
    kinds = {site.kind for site in sites}
    assert kinds == {"root", "soffset", "vtsize", "objsize", "vtentry", "uoffset", "len"} | {
        "scalar",
        "elem",
    }
    whats = " ".join(site.what for site in sites)
    for field in ("Tensor field 0[", "Operator field 1[", "Buffer field 0 vector length"):
        assert field in whats
    assert run_case(data, export=True) == "accepted: exported (TFLM included)"


STEP = st.tuples(
    st.integers(0, 99),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(STEP, min_size=1, max_size=4))
def test_mutated_models_end_in_the_project_error_or_succeed(
    seed: tuple[bytes, list[Any]], plan: list[tuple[int, int, int, int]]
) -> None:
    data, sites = seed
    outcome = run_case(mutate(data, sites, plan))  # anything but FirmwareExportError raises
    assert outcome.startswith(("refused at ", "accepted: "))


def test_campaign_in_worker_processes(seed: tuple[bytes, list[Any]]) -> None:
    """The long run's machinery (forked workers, time limit), on 200 cases with TFLM."""
    data, sites = seed

    def target(i: int) -> str:
        return run_case(mutate(data, sites, random_plan(random.Random(f"ci:{i}"))), i % 20 == 0)

    camp = run_campaign(target, 200, workers=1, timeout=120)
    assert camp.bugs == [], camp.bug_summary
    assert sum(camp.outcomes.values()) == 200
    stages = {label.split(":")[0] for label in camp.outcomes}
    assert {"refused at read", "refused at check", "accepted"} <= stages, camp.outcomes
    assert any("TFLM" in label for label in camp.outcomes)


def _crashy(i: int) -> str:
    if i == 3:
        raise ZeroDivisionError("a bug")
    if i == 5:
        faulthandler.disable()  # no dump on the test's output: the crash is the point
        os.kill(os.getpid(), signal.SIGSEGV)
    if i == 7:
        time.sleep(60)
    return "fine"


def test_the_runner_reports_exceptions_crashes_and_hangs() -> None:
    camp = run_campaign(_crashy, 10, workers=2, timeout=2)
    kinds = {(b.case, b.kind) for b in camp.bugs}
    assert kinds == {(3, "exception"), (5, "crash"), (7, "hang")}
    assert camp.outcomes["fine"] == 7
    assert "ZeroDivisionError at test_fuzz_reader.py" in camp.bug_summary.__repr__()


def _greedy(i: int) -> str:
    if i == 1:
        bytearray(5 << 30)  # more than the worker's memory limit (4 GiB beyond its start)
    return "fine"


def test_the_runner_turns_a_runaway_allocation_into_a_reported_exception() -> None:
    camp = run_campaign(_greedy, 3, workers=1, timeout=30)
    assert [(b.case, b.kind) for b in camp.bugs] == [(1, "exception")]
    assert "MemoryError" in camp.bug_summary.__repr__()
    assert camp.outcomes["fine"] == 2


def test_run_case_lets_other_exceptions_through(
    seed: tuple[bytes, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import firmware_export.plan

    def broken(graph: Any) -> Any:
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(firmware_export.plan, "build_plan", broken)
    with pytest.raises(IndexError):
        run_case(seed[0])


# ----------------------------------------------------------------------------- regressions


def _edit(data: bytes, change: Any) -> bytes:
    m = edit_model(data)
    change(m, m.subgraphs[0])
    return pack(m)


def _op(sg: Any, m: Any, kind: str) -> Any:
    code = getattr(s.BuiltinOperator, kind)
    return next(
        o
        for o in sg.operators
        if max(m.operatorCodes[o.opcodeIndex].builtinCode, 0) == code
        or m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode == code
    )


def _set_stride0(m: Any, sg: Any) -> None:
    _op(sg, m, "AVERAGE_POOL_2D").builtinOptions.strideW = 0


def _wrong_options(m: Any, sg: Any) -> None:
    op = _op(sg, m, "CONV_2D")
    op.builtinOptionsType = s.BuiltinOptions.Pool2DOptions
    op.builtinOptions = s.Pool2DOptionsT()


def _missing_input(m: Any, sg: Any) -> None:
    sg.inputs = [len(sg.tensors) + 5]


def _no_inputs(m: Any, sg: Any) -> None:
    _op(sg, m, "SOFTMAX").inputs = []


def _cycle(m: Any, sg: Any) -> None:
    op = _op(sg, m, "RESHAPE")
    op.inputs = [op.outputs[0], *list(op.inputs)[1:]]


def _bad_buffer(m: Any, sg: Any) -> None:
    sg.tensors[sg.inputs[0]].buffer = 0xFFFFFFF2


def _variable(m: Any, sg: Any) -> None:
    sg.tensors[sg.outputs[0]].isVariable = True


def _tiny_logistic_scale(m: Any, sg: Any) -> None:
    sg.tensors[_op(sg, m, "LOGISTIC").inputs[0]].quantization.scale = np.array([1e-9], np.float32)


def _negative_dims(m: Any, sg: Any) -> None:
    w = sg.tensors[_op(sg, m, "FULLY_CONNECTED").inputs[1]]
    w.shape = np.array([-1, -int(np.prod(w.shape))], np.int32)


def _constant_operand(m: Any, sg: Any) -> None:
    _op(sg, m, "SOFTMAX").inputs = [_op(sg, m, "RESHAPE").inputs[1]]


def _logistic_made_softmax(m: Any, sg: Any) -> None:
    """Case 19020 of `make fuzz-reader` (seed 1): a LOGISTIC's operator code changed to
    SOFTMAX, which then carries no SoftmaxOptions; TFLM aborts (SIGABRT) on it."""
    softmax = _op(sg, m, "SOFTMAX").opcodeIndex
    logistic = _op(sg, m, "LOGISTIC")
    logistic.opcodeIndex = softmax
    logistic.builtinOptionsType = s.BuiltinOptions.NONE
    logistic.builtinOptions = None


def _shape_changed(m: Any, sg: Any) -> None:
    out = sg.tensors[_op(sg, m, "LOGISTIC").outputs[0]]
    out.shape = np.array([1, 2, *list(out.shape)[2:]], np.int32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set_stride0, r"op \d+ AVERAGE_POOL_2D: stride 2x0 \(must be at least 1x1\)"),
        (_wrong_options, r"CONV_2D carries Pool2DOptions instead of Conv2DOptions"),
        (_missing_input, r"the model input refers to missing tensor \d+"),
        (_no_inputs, r"op \d+ SOFTMAX has 0 inputs \(1 expected\)"),
        (_cycle, r"op \d+ RESHAPE reads tensor \d+ .* before any op writes it"),
        (_bad_buffer, r"tensor \d+ '.*' refers to buffer 4294967282, but the model has"),
        (_variable, r"tensor \d+ '.*' is a variable \(stateful\) tensor"),
        (_tiny_logistic_scale, r"op \d+ LOGISTIC: input scale .* is below 2\*\*-28"),
        (_negative_dims, r"constant with negative dimensions"),
        (_constant_operand, r"op \d+ SOFTMAX computes on constant tensor \d+"),
        (_shape_changed, r"op \d+ LOGISTIC: input shape \[1, 28, 28, 6\] and output shape "),
        (_logistic_made_softmax, r"SOFTMAX without options \(no beta\)"),
    ],
    ids=[
        "stride 0 (ZeroDivisionError)",
        "options of another op (AttributeError)",
        "graph input out of range (IndexError)",
        "op without inputs (IndexError)",
        "op reading its own output (TFLM hang)",
        "buffer index out of range (TFLM segfault)",
        "variable tensor (a fuzzed one crashed TFLM)",
        "tiny LOGISTIC input scale (ValueError)",
        "negative dimensions of a constant (ValueError)",
        "SOFTMAX of a constant (AssertionError in the plan)",
        "LOGISTIC changing the shape (TFLM segfault)",
        "SOFTMAX without options (TFLM abort)",
    ],
)
def test_found_by_fuzzing(seed: tuple[bytes, list[Any]], change: Any, message: str) -> None:
    bad = _edit(seed[0], change)
    with pytest.raises(FirmwareExportError, match=message) as info:
        load_graph(bad)
    assert "\n" not in str(info.value)
    assert run_case(bad, export=True).startswith(("refused at read", "refused at check"))
