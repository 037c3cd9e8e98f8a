"""The scratch arena: which buffers share memory (in-place steps), where each arena buffer and
each step's kernel scratch goes (``memory.plan_memory``), and how wide the tile strips get."""

from __future__ import annotations

from firmware_export import tile
from firmware_export.plan.memory import Request, plan_memory
from firmware_export.plan.types import ARENA_ALIGN, Buffer, ConvStep, LutStep, Step, Table


def _merge(steps: list[Step], buffers: list[Buffer], keep: Buffer, gone: Buffer) -> None:
    """Make ``gone`` share ``keep``'s memory (in-place step)."""
    keep.tensors += gone.tensors
    keep.first = min(keep.first, gone.first)
    keep.last = max(keep.last, gone.last)
    if gone.location == "output":
        keep.location = "output"
    for step in steps:
        if step.src is gone:
            step.src = keep
        if step.dst is gone:
            step.dst = keep
    buffers.remove(gone)


def _place(steps: list[Step], buffers: list[Buffer]) -> int:
    """Place the arena buffers and kernel scratch areas; return the arena size."""
    owners: list[Buffer | Step] = []
    requests: list[Request] = []
    for b in buffers:
        if b.location == "arena":
            owners.append(b)
            requests.append(Request(b.size, b.first, b.last, ARENA_ALIGN))
    for i, step in enumerate(steps):
        if step.scratch:  # kernel scratch lives for its step only
            owners.append(step)
            requests.append(Request(step.scratch, i, i, ARENA_ALIGN))
    layout = plan_memory(requests, ARENA_ALIGN)
    for owner, offset in zip(owners, layout.offsets, strict=True):
        if isinstance(owner, Buffer):
            owner.offset = offset
        else:
            owner.scratch_offset = offset
    return layout.total


def _widen_tiles(steps: list[Step], buffers: list[Buffer], arena: int) -> int:
    """Wider tile strips (fewer tile refills) where that does not grow the arena."""
    for step in steps:
        if not isinstance(step, ConvStep) or step.tile is None:
            continue
        tp, n_maps = step.tile, len(step.patch_channels)
        for windows in range(tp.blocks_w, 1, -1):
            shape = tp.shape
            if (shape.rows - 1) * shape.width(windows) + shape.kw > tile.LDRD_MAX_WORDS:
                continue
            narrow = tp.windows
            tp.windows = windows
            step.scratch = tp.scratch(n_maps)
            if _place(steps, buffers) <= arena:
                break
            tp.windows = narrow
            step.scratch = tp.scratch(n_maps)
        arena = _place(steps, buffers)
    return arena


def assign_memory(
    steps: list[Step], buffers: list[Buffer], in_buf: Buffer, out_buf: Buffer, out_tensor: int
) -> tuple[list[Buffer], int]:
    """Lay out ``buffers`` (in creation order) for ``steps``: the model input and output stay
    outside the arena, elementwise steps and softmax run in place where their input dies
    with them, the rest is placed by lifetime. Returns the buffers left and the arena size."""
    buffers = list(buffers)
    in_buf.location = "input"
    if out_buf is in_buf:
        # The model is a pure reshape of its input: copy it out.
        copy_dst = Buffer(max(b.id for b in buffers) + 1, in_buf.size, "output", [])
        identity = Table(list(range(-128, 128)), ["copy"])
        steps.append(
            LutStep(
                "copy",
                "lut",
                [],
                in_buf,
                copy_dst,
                size=in_buf.size,
                table=identity,
                out_tensor=out_tensor,
            )
        )
        in_buf.last = len(steps) - 1
        copy_dst.first = copy_dst.last = len(steps) - 1
        buffers.append(copy_dst)
    else:
        out_buf.location = "output"

    # In place: elementwise steps and softmax overwrite an arena input that dies with them.
    for i, step in enumerate(steps):
        if step.kind not in ("lut", "softmax"):
            continue
        src, dst = step.src, step.dst
        if src.location == "arena" and src.last == i and src.size == dst.size:
            _merge(steps, buffers, src, dst)

    return buffers, _widen_tiles(steps, buffers, _place(steps, buffers))
