"""The greedy memory planner (``firmware_export.plan.memory``) on plain buffer lists."""

from __future__ import annotations

import random

import pytest

from firmware_export.plan.memory import Layout, Part, Request, check_layout, plan_memory


def test_disjoint_lifetimes_share_offset_zero() -> None:
    reqs = [Request(100, 0, 0), Request(60, 1, 1), Request(80, 2, 2)]
    layout = plan_memory(reqs)
    assert layout.offsets == [0, 0, 0]
    assert layout.total == 100


def test_overlapping_lifetimes_stack_largest_first() -> None:
    reqs = [Request(10, 0, 2), Request(30, 1, 3), Request(20, 2, 2)]
    layout = plan_memory(reqs)
    # Largest first: 30 at 0, then 20 above it, then 10 above both (all live at step 2).
    assert layout.offsets == [50, 0, 30]
    assert layout.total == 60
    assert check_layout(reqs, layout) == []


def test_first_fit_reuses_a_gap() -> None:
    # A (0..1) and C (1..2) stay live at step 1, B (2..3) only overlaps C: B can go where A was.
    reqs = [Request(40, 0, 1), Request(40, 2, 3), Request(50, 1, 2)]
    layout = plan_memory(reqs)
    assert layout.offsets == [50, 50, 0]
    assert layout.total == 90


def test_gap_too_small_once_aligned_is_skipped() -> None:
    """Adversarial: a 6-byte hole at offset 10 fits 5 bytes, but not at a multiple of 4."""
    reqs = [
        Request(10, 0, 5, 4),  # [0, 10)
        Request(8, 0, 5, 4),  # would go at 12, see below
        Request(5, 2, 3, 4),
    ]
    layout = plan_memory(reqs, total_align=4)
    assert layout.offsets[0] == 0
    assert layout.offsets[1] == 12  # aligned up from 10
    # The 2 bytes in [10, 12) are too few; the next aligned free offset is 20.
    assert layout.offsets[2] == 20
    assert layout.total == 28  # 25 rounded up to the alignment
    assert check_layout(reqs, layout) == []


def test_greedy_is_not_optimal_but_valid() -> None:
    """Adversarial: largest first is a heuristic. Here it needs 10 bytes where 9 suffice (the
    4-byte buffer low, the 3-byte one in its place once it dies); the result must still be a
    valid layout, and no better one is claimed."""
    reqs = [
        Request(4, 0, 1),
        Request(2, 1, 2),
        Request(2, 2, 3),
        Request(2, 1, 2),
        Request(3, 2, 3),
    ]
    layout = plan_memory(reqs)
    assert check_layout(reqs, layout) == []
    assert layout.total == 10
    better = Layout([0, 5, 0, 7, 2], 9)
    assert check_layout(reqs, better) == []


def test_zero_size_and_empty_input() -> None:
    assert plan_memory([]) == Layout([], 0)
    layout = plan_memory([Request(0, 0, 3), Request(4, 0, 3)])
    assert layout.total == 4
    assert check_layout([Request(0, 0, 3), Request(4, 0, 3)], layout) == []


def test_ties_keep_request_order() -> None:
    reqs = [Request(8, 0, 1), Request(8, 0, 1), Request(8, 0, 1)]
    assert plan_memory(reqs).offsets == [0, 8, 16]


@pytest.mark.parametrize(
    "args",
    [(-1, 0, 0), (4, 2, 1), (4, 0, 0, 0)],
)
def test_bad_requests_are_refused(args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        Request(*args)


def test_check_layout_finds_overlaps_and_misalignment() -> None:
    reqs = [Request(8, 0, 1, 4), Request(8, 1, 2, 4)]
    assert check_layout(reqs, Layout([0, 4], 12))  # live together, bytes 4..8 shared
    assert check_layout(reqs, Layout([0, 9], 20))  # misaligned
    assert check_layout(reqs, Layout([0, 8], 12))  # past the total
    assert check_layout(reqs, Layout([0, 8], 16)) == []


def test_random_layouts_are_valid_and_bounded() -> None:
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 12)
        reqs = []
        for _ in range(n):
            a, b = sorted(rng.randint(0, 8) for _ in range(2))
            reqs.append(Request(rng.randint(0, 64), a, b, rng.choice([1, 2, 4, 8, 16])))
        layout = plan_memory(reqs, total_align=4)
        assert check_layout(reqs, layout) == []
        assert layout.total % 4 == 0
        # Never worse than giving every buffer its own aligned slot; never better than the
        # bytes live at the busiest step.
        peak = max(sum(r.size for r in reqs if r.first <= step <= r.last) for step in range(9))
        assert peak <= layout.total <= sum(r.size + r.align - 1 for r in reqs) + 3


# ------------------------------------------------------------------ groups of parts


def test_group_parts_share_bytes_and_others_see_each_part() -> None:
    """A group's parts may share bytes (the caller decided so); any other request is kept off
    each part only while that part is live."""
    out_in = Request.group([Part(0, 40, 1, 3), Part(8, 108, 0, 1)], 4)
    assert (out_in.size, out_in.first, out_in.last) == (108, 0, 3)
    # Live at step 3 only, with the group's output part [0, 40): goes right above it.
    late = Request(60, 3, 3, 4)
    # Live at step 0 with the input part [8, 108): the 8 bytes below it are too few.
    early = Request(16, 0, 0, 4)
    reqs = [out_in, late, early]
    layout = plan_memory(reqs, 4)
    assert layout.offsets == [0, 40, 108]
    assert check_layout(reqs, layout) == []
    # The plain-request view of the group (108 bytes, steps 0..3) would not allow either.
    flat = [Request(108, 0, 3, 4), late, early]
    assert check_layout(flat, layout) != []


def test_group_fills_a_gap_only_its_live_parts_fit() -> None:
    # The group goes first (largest): its part [30, 80) lives 0..3, so the 50 bytes live at
    # 0..1 cannot share any of it, even though the part [0, 30) is free then.
    reqs = [Request(50, 0, 1), Request.group([Part(0, 30, 2, 3), Part(30, 80, 0, 3)])]
    layout = plan_memory(reqs)
    assert layout.offsets == [80, 0]
    assert check_layout(reqs, layout) == []
    # When every part lives after step 1, the 50 bytes may sit under the whole group.
    reqs2 = [Request(50, 0, 1), Request.group([Part(0, 30, 2, 3), Part(50, 100, 2, 3)])]
    layout2 = plan_memory(reqs2)
    assert layout2.offsets == [0, 0]
    assert check_layout(reqs2, layout2) == []


def test_check_layout_catches_a_part_clash() -> None:
    reqs = [Request.group([Part(0, 10, 0, 0), Part(10, 20, 1, 1)]), Request(5, 1, 1)]
    assert check_layout(reqs, Layout([0, 0], 20)) == []  # meets the first part, not live
    assert check_layout(reqs, Layout([0, 12], 20)) != []  # meets the second part, live


def test_bad_parts_are_refused() -> None:
    with pytest.raises(ValueError):
        Part(5, 4, 0, 0)
    with pytest.raises(ValueError):
        Part(0, 4, 2, 1)
    with pytest.raises(ValueError):
        Request(10, 0, 0, 1, (Part(0, 11, 0, 0),))
    with pytest.raises(ValueError):
        Request.group([])


@pytest.mark.parametrize("seed", range(40))
def test_random_groups_give_valid_layouts(seed: int) -> None:
    rng = random.Random(seed)
    reqs = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.4:
            first = rng.randint(0, 5)
            mid = rng.randint(first, 6)
            last = rng.randint(mid, 7)
            lead = rng.randint(0, 20)
            reqs.append(
                Request.group(
                    [
                        Part(0, rng.randint(1, 30), mid, last),
                        Part(lead, lead + rng.randint(1, 40), first, mid),
                    ],
                    rng.choice([1, 4]),
                )
            )
        else:
            first = rng.randint(0, 6)
            reqs.append(
                Request(rng.randint(0, 40), first, rng.randint(first, 7), rng.choice([1, 4]))
            )
    layout = plan_memory(reqs)
    assert check_layout(reqs, layout) == []
