"""A greedy memory planner over buffer lifetimes, in the style of TFLM's GreedyMemoryPlanner.

It knows nothing of graphs or steps: it takes a plain list of requests (size, first and last
step that use the bytes, alignment) and returns an offset for each and the total size. Buffers
are placed largest first (ties: earlier first use, then request order); each goes at the
lowest aligned offset that does not overlap any already placed buffer whose lifetime overlaps
its own (first fit over the placed buffers sorted by offset). Lifetimes are inclusive step
ranges; two buffers whose ranges share a step are never given overlapping bytes.

A request may also be a *group* of parts placed together, each part a byte range relative to
the request's offset with a lifetime of its own: e.g. a layer's output that may begin to
overwrite its input's dead rows while the layer runs (``Part`` below). Parts of one request
never conflict with each other; the caller has decided they may share bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """Bytes ``lo`` to ``hi`` (exclusive) from the request's offset, live from step ``first``
    to step ``last`` (inclusive)."""

    lo: int
    hi: int
    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise ValueError(f"part bytes {self.lo}..{self.hi} are not a range from 0")
        if self.first > self.last:
            raise ValueError(f"lifetime {self.first}..{self.last} is empty")


@dataclass(frozen=True)
class Request:
    """``size`` bytes, live from step ``first`` to step ``last`` (inclusive), placed at a
    multiple of ``align``; or, with ``parts``, a group whose parts each have bytes and a
    lifetime of their own (``size``, ``first`` and ``last`` then span them)."""

    size: int
    first: int
    last: int
    align: int = 1
    parts: tuple[Part, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"buffer size {self.size} is negative")
        if self.first > self.last:
            raise ValueError(f"lifetime {self.first}..{self.last} is empty")
        if self.align < 1:
            raise ValueError(f"alignment {self.align} is not positive")
        for part in self.parts:
            if part.hi > self.size or part.first < self.first or part.last > self.last:
                raise ValueError(f"part {part} lies outside its request")

    @classmethod
    def group(cls, parts: Sequence[Part], align: int = 1) -> Request:
        """A request made of ``parts`` (placed together, never conflicting with each other)."""
        if not parts:
            raise ValueError("a group needs at least one part")
        return cls(
            max(p.hi for p in parts),
            min(p.first for p in parts),
            max(p.last for p in parts),
            align,
            tuple(parts),
        )

    def rectangles(self) -> tuple[Part, ...]:
        """The request's parts; a plain request is one part."""
        return self.parts or (Part(0, self.size, self.first, self.last),)

    def overlaps(self, other: Request) -> bool:
        """Whether the two lifetimes share a step."""
        return not (self.last < other.first or other.last < self.first)


def _clash(a: Part, oa: int, b: Part, ob: int) -> bool:
    """Whether part ``a`` at offset ``oa`` and part ``b`` at ``ob`` share a step and a byte."""
    live = not (a.last < b.first or b.last < a.first)
    return live and oa + a.lo < ob + b.hi and ob + b.lo < oa + a.hi


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
        # Offsets the request may not take: for each part of a placed request and each part
        # of this one that are live together, the open interval of offsets where they meet.
        banned = sorted(
            (offsets[j] + pj.lo - pk.hi + 1, offsets[j] + pj.hi - pk.lo - 1)
            for j in placed
            if requests[j].overlaps(req)
            for pj in requests[j].rectangles()
            for pk in req.rectangles()
            if pj.hi > pj.lo and pk.hi > pk.lo and not (pj.last < pk.first or pk.last < pj.first)
        )
        offset = 0
        for lo, hi in banned:
            if offset < lo:
                break
            if offset <= hi:
                offset = _align_up(hi + 1, req.align)
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
            if any(
                _clash(pa, oa, pb, ob)
                for pa in a.rectangles()
                for pb in b.rectangles()
                if pa.hi > pa.lo and pb.hi > pb.lo
            ):
                problems.append(f"requests {i} and {j} are live together and share bytes")
    return problems
