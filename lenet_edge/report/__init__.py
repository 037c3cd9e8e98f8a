"""``lenet-edge report``: one self-contained HTML page about a run directory.

The page gathers what the other commands wrote into the run directory, matched by content
(SHA-256), not by file name (:mod:`.discover`): ``train.json``, the int8 ``.tflite`` and its
quantization record, the JSON of ``verify --backend all --json``, ``export.json`` and the JSON of
``mcu-test --json``. What is absent is said, with the command that measures it.

It measures itself (:mod:`.measure`): the float predictions, the per-layer quantization error
(SQNR) and, when no verify JSON of the run matches the model and the image count, the
verification of the int8 model on every host interpreter. That verification is saved for the
next report only after the page is written, and never over an existing file: as
``verify.json`` for all 10,000 test images, as ``verify-limit-N.json`` for a ``--limit`` run.

The figures are matplotlib PNGs without metadata (:mod:`.plots`); the page is a Jinja2 template
with autoescaping (:mod:`.render`, ``templates/``), deterministic (no timestamps, no timings)
and self-contained (images embedded as base64, no external resources, no scripts).
"""

from lenet_edge.report.build import (
    DEFAULT_SQNR_IMAGES,
    REPORT_NAME,
    VERIFY_NAME,
    Options,
    Report,
    build_report,
    write_report,
)
from lenet_edge.report.discover import Found, discover
from lenet_edge.report.measure import activation_map, layer_sqnr, weight_table

__all__ = [
    "DEFAULT_SQNR_IMAGES",
    "REPORT_NAME",
    "VERIFY_NAME",
    "Found",
    "Options",
    "Report",
    "activation_map",
    "build_report",
    "discover",
    "layer_sqnr",
    "weight_table",
    "write_report",
]
