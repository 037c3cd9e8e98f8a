"""A greedy memory planner over buffer lifetimes, in the style of TFLM's GreedyMemoryPlanner.

It knows nothing of graphs or steps: it takes a plain list of requests (size, first and last
step that use the bytes, alignment) and returns an offset for each and the total size. Buffers
are placed largest first (ties: earlier first use, then request order); each goes at the
lowest aligned offset that does not overlap any already placed buffer whose lifetime overlaps
its own (first fit over the placed buffers sorted by offset). Lifetimes are inclusive step
ranges; two buffers whose ranges share a step are never given overlapping bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """``size`` bytes, live from step ``first`` to step ``last`` (inclusive), placed at a
    multiple of ``align``."""

    size: int
    first: int
    last: int
    align: int = 1

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"buffer size {self.size} is negative")
        if self.first > self.last:
            raise ValueError(f"lifetime {self.first}..{self.last} is empty")
        if self.align < 1:
            raise ValueError(f"alignment {self.align} is not positive")

    def overlaps(self, other: Request) -> bool:
        """Whether the two lifetimes share a step."""
        return not (self.last < other.first or other.last < self.first)


@dataclass(frozen=True)
class Layout:
    offsets: list[int]  # one per request, in request order
    total: int  # bytes needed: the end of the highest buffer, rounded up to ``total_align``


def _align_up(n: int, align: int) -> int:
    return -(-n // align) * align


def plan_memory(requests: Sequence[Request], total_align: int = 1) -> Layout:
    """Offsets for ``requests`` (greedy, largest first, first fit) and the total size."""
    order = sorted(range(len(requests)), key=lambda k: (-requests[k].size, requests[k].first, k))
    offsets = [0] * len(requests)
    placed: list[int] = []
    end = 0
    for k in order:
        req = requests[k]
        conflicts = sorted(
            (offsets[j], requests[j].size) for j in placed if requests[j].overlaps(req)
        )
        offset = 0
        for o, s in conflicts:
            if offset + req.size <= o:
                break
            offset = max(offset, _align_up(o + s, req.align))
        offsets[k] = offset
        placed.append(k)
        end = max(end, offset + req.size)
    return Layout(offsets, _align_up(end, total_align))


def check_layout(requests: Sequence[Request], layout: Layout) -> list[str]:
    """What is wrong with ``layout`` for ``requests`` (empty when it is valid): misaligned
    offsets, buffers past the total, and live-at-once buffers that share bytes."""
    problems = []
    for i, (r, o) in enumerate(zip(requests, layout.offsets, strict=True)):
        if o < 0 or o % r.align:
            problems.append(f"request {i}: offset {o} is not a multiple of {r.align}")
        if o + r.size > layout.total:
            problems.append(f"request {i}: ends at {o + r.size}, past the total {layout.total}")
    for i, a in enumerate(requests):
        for j in range(i + 1, len(requests)):
            b = requests[j]
            oa, ob = layout.offsets[i], layout.offsets[j]
            if a.size and b.size and a.overlaps(b) and oa < ob + b.size and ob < oa + a.size:
                problems.append(f"requests {i} and {j} are live together and share bytes")
    return problems
