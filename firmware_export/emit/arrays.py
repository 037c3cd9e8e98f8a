"""The pieces every emitter spells: aligned constant arrays and parameter-block fields."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_export.csyntax import c_values
from firmware_export.plan import Table

ARRAY_ALIGN = 16

KERNEL_FILES = {
    "conv": "conv_s8.c.j2",
    "fully_connected": "fully_connected_s8.c.j2",
    "pool": "pool_s8.c.j2",
    "lut": "lut_s8.c.j2",
    "softmax": "softmax_s8.c.j2",
}


@dataclass
class Array:
    ctype: str
    name: str
    values: list[int]
    comment: str
    per_line: int = 16
    guard: str = ""  # a preprocessor condition the array is compiled under ("" = always)

    @property
    def count(self) -> int:
        return max(len(self.values), 1)

    def as_context(self) -> dict[str, object]:
        return {
            "ctype": self.ctype,
            "name": self.name,
            "count": self.count,
            "comment": self.comment,
            "body": c_values(self.values, self.per_line),
            "guard": self.guard,
        }


@dataclass
class Field:
    value: str
    comment: str


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def clamp_table(table: Table | None, lo: int, hi: int) -> Table | None:
    """The activation table with the activation clamp folded in (the tile kernel saturates to
    int8 and looks up); None when there is neither."""
    if table is None and (lo, hi) == (-128, 127):
        return None
    base = table.values if table is not None else list(range(-128, 128))
    ops = [] if (lo, hi) == (-128, 127) else [f"clamp [{lo}, {hi}]"]
    ops += table.ops if table is not None else []
    return Table([base[min(max(v, lo), hi) + 128] for v in range(-128, 128)], ops)
