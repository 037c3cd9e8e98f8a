"""Import TensorFlow/Keras quietly and deterministically.

Every module that needs TensorFlow imports it through :func:`tf`, so the log level is set
before TensorFlow loads and its C++ start-up chatter does not reach stderr: one-line errors
stay one line.
"""

from __future__ import annotations

import os
from typing import Any

from firmware_export.sysutil import quiet_stderr

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

_TF: Any = None


def tf() -> Any:
    """The ``tensorflow`` module, imported once with logging silenced."""
    global _TF
    if _TF is None:
        with quiet_stderr():
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            import keras
            import tensorflow

        tensorflow.get_logger().setLevel("ERROR")
        # A fixed thread count: TensorFlow splits reductions by thread, so results would
        # otherwise depend on how many cores the process sees (taskset, containers, CI).
        threads = int(os.environ.get("LENET_EDGE_TF_THREADS", "2"))
        tensorflow.config.threading.set_intra_op_parallelism_threads(threads)
        tensorflow.config.threading.set_inter_op_parallelism_threads(1)
        keras.config.disable_interactive_logging()
        _TF = tensorflow
    return _TF


def keras() -> Any:
    """The ``keras`` module, imported only after :func:`tf` has configured TensorFlow (its
    thread counts cannot change once Keras has started it)."""
    tf()
    import keras as keras_module

    return keras_module


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    t = tf()
    keras().utils.set_random_seed(seed)
    t.config.experimental.enable_op_determinism()
