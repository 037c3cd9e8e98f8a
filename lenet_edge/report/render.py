"""From figures to the page: text formatting of numbers, embedded images, and the Jinja2
templates (``templates/``) that turn a plain data context into the self-contained HTML page.

The templates autoescape: every string of the context (file names, model names, commands,
strings read from JSON) is HTML-escaped. A table cell is a string or a mapping with the keys
``indent`` (bool), ``b`` (bold text), ``code`` (monospace text) and ``text`` (plain text
after them), rendered in that order.
"""

from __future__ import annotations

import base64
import math
import struct
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

TEMPLATES = Path(__file__).resolve().parent / "templates"


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def count(x: Any) -> str:
    return f"{int(x):,}" if isinstance(x, int | np.integer) and not isinstance(x, bool) else "–"


def kib(x: Any) -> str:
    return f"{int(x):,} B ({int(x) / 1024:.1f} KiB)" if isinstance(x, int) else "–"


def db(x: float) -> str:
    if math.isinf(x):
        return "exact (∞)" if x > 0 else "−∞"
    return f"{x:.1f}"


def img(png: bytes, alt: str) -> dict[str, Any]:
    """An embedded PNG: base64 data, its alternative text and its size in pixels."""
    width, height = struct.unpack(">II", png[16:24])
    return {
        "data": base64.b64encode(png).decode("ascii"),
        "alt": alt,
        "width": int(width),
        "height": int(height),
    }


def missing(text: str, command: str | None = None) -> dict[str, Any]:
    """What the page cannot show, and the command that measures it."""
    return {"text": text, "command": command}


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(context: dict[str, Any]) -> str:
    """The HTML page of ``context`` (see ``templates/report.html.j2``, which inlines
    ``templates/report.css``)."""
    return str(_environment().get_template("report.html.j2").render(**context))
