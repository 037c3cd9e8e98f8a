"""firmware_export: turn an int8 ``.tflite`` into C (TFLM arrays and a standalone engine).

This package never imports TensorFlow: it reads the flatbuffer with the schema module
shipped by ``ai-edge-litert``.
"""

__version__ = "0.1.0"  #: the one version of the distribution; lenet_edge re-exports it
