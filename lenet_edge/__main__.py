"""``python -m lenet_edge``."""

from lenet_edge.cli import run

run()
