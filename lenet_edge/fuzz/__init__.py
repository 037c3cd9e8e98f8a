"""Fuzzing machinery shared by the short runs in ``make test`` and the long ``make fuzz`` runs.

- :mod:`lenet_edge.fuzz.runner`: numbered cases in forked workers, with time and memory limits;
- :mod:`lenet_edge.fuzz.tflite_mutate`: mutations of a real ``.tflite`` for the reader;
- :mod:`lenet_edge.fuzz.engine`: the C engine under ASan/UBSan against TFLM.

The scripts in ``scripts/`` and the tests import this package; neither reaches into ``tests/``.
"""
