"""Emitters: the typed plan (and the TFLM model array, the test vectors) spelled as C through
the Jinja2 templates in ``firmware_export/c`` and ``firmware_export/templates``. They decide
nothing: every number and every choice comes from the plan.

- :mod:`~firmware_export.emit.standalone`: the standalone engine (``StandaloneWriter``);
- :mod:`~firmware_export.emit.conv`: convolution layers (generic kernel or tile function);
- :mod:`~firmware_export.emit.arrays`: aligned constant arrays and parameter fields;
- :mod:`~firmware_export.emit.tflm`: the TFLM model array and example;
- :mod:`~firmware_export.emit.testvec`: the test vectors, host test program and Makefile.
"""
