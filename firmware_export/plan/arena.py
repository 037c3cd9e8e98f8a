"""The scratch arena: which buffers share memory (in-place steps), where each arena buffer and
each step's kernel scratch goes (``memory.plan_memory``), and how wide the tile strips get."""

from __future__ import annotations

from firmware_export import tile
from firmware_export.plan.memory import Part, Request, plan_memory
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


def output_lead(step: ConvStep) -> int | None:
    """How many bytes before its input a convolution's output may start and still never
    overwrite an input byte the layer reads later; None when it gains nothing or the
    kernel's write order is not one this knows.

    Both kernels write whole output rows in order. A tile convolution's block row ``by``
    writes output rows up to the end of row ``by`` (``by`` pooled, or conv rows ``2 by + 1``
    without pooling) while its fills still read input rows from ``2 by - pad_top`` on. The
    generic kernel with a fused pooling writes pooled row ``py`` while it reads input rows
    from the first conv row of that pooling window on. Every byte of the rows above is dead.
    """
    out_row = step.out_w * step.out_c
    in_row = step.in_w * step.in_c
    tp, q = step.tile, step.pool
    if tp is not None and step.stride_h == 1:
        rows_out = 1 if q is not None else 2
        n_rows = tp.blocks_h
        writes = [(by + 1) * rows_out * out_row for by in range(n_rows)]
        first_read = [max(0, 2 * by - step.pad_top) for by in range(n_rows)]
        out_bytes = rows_out * n_rows * out_row
    elif tp is None and q is not None and q.stride_h >= q.filter_h:
        n_rows = q.out_h
        writes = [(py + 1) * out_row for py in range(n_rows)]
        first_read = [
            max(0, max(0, py * q.stride_h - q.pad_top) * step.stride_h - step.pad_top)
            for py in range(n_rows)
        ]
        out_bytes = n_rows * out_row
    else:
        return None
    lead = max(w - r * in_row for w, r in zip(writes, first_read, strict=True))
    lead = -(-max(lead, 0) // ARENA_ALIGN) * ARENA_ALIGN
    return lead if lead < out_bytes else None


def _groups(steps: list[Step]) -> dict[int, tuple[Buffer, Buffer, int]]:
    """Convolutions whose arena output may overlap the dead rows of the arena input
    that dies with them: output buffer id -> (output, input, the output's lead in bytes)."""
    groups: dict[int, tuple[Buffer, Buffer, int]] = {}
    taken: set[int] = set()
    for i, step in enumerate(steps):
        src, dst = step.src, step.dst
        if not isinstance(step, ConvStep) or src is dst:
            continue
        if src.location != "arena" or dst.location != "arena" or src.last != i:
            continue
        lead = output_lead(step)
        if lead is None or src.id in taken or dst.id in taken:
            continue
        groups[dst.id] = (dst, src, lead)
        taken.update({src.id, dst.id})
    return groups


def _place(steps: list[Step], buffers: list[Buffer]) -> int:
    """Place the arena buffers and kernel scratch areas; return the arena size."""
    owners: list[Buffer | Step | tuple[Buffer, Buffer, int]] = []
    requests: list[Request] = []
    groups = _groups(steps)
    grouped = {b.id for dst, src, _ in groups.values() for b in (dst, src)}
    for b in buffers:
        if b.location != "arena":
            continue
        if b.id in groups:
            dst, src, lead = groups[b.id]
            owners.append(groups[b.id])
            parts = [
                Part(0, dst.size, dst.first, dst.last),
                Part(lead, lead + src.size, src.first, src.last),
            ]
            requests.append(Request.group(parts, ARENA_ALIGN))
        elif b.id not in grouped:
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
        elif isinstance(owner, tuple):
            dst, src, lead = owner
            dst.offset = offset
            src.offset = offset + lead
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
