"""Full-integer post-training quantization with the TensorFlow Lite converter.

The Keras model is exported as a SavedModel with a fixed batch of 1 (so ``Flatten`` becomes a
single static RESHAPE), then converted with a representative dataset drawn from the training
split. Only int8 builtin ops are allowed: anything that would need a float fallback fails.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from lenet_edge.errors import LenetEdgeError
from lenet_edge.tfenv import quiet_stderr, tf

IO_TYPES = ("int8", "uint8", "float32")


def calibration_images(train_images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` training images drawn without replacement with ``seed`` (never the test set)."""
    if n < 1:
        raise LenetEdgeError("--calibration-samples must be at least 1")
    n = min(n, len(train_images))
    idx = np.random.default_rng(seed).choice(len(train_images), size=n, replace=False)
    return train_images[np.sort(idx)]


def convert_int8(
    model: Any,
    calibration: np.ndarray,
    per_channel: bool = True,
    io_type: str = "int8",
) -> bytes:
    """Convert a Keras model to a full-int8 ``.tflite`` flatbuffer.

    ``calibration`` holds preprocessed float32 NHWC images. ``io_type`` sets the input and
    output tensor types (int8, uint8 or float32; the graph is int8 inside either way).
    """
    t = tf()
    import keras

    if io_type not in IO_TYPES:
        raise LenetEdgeError(f"--io must be one of {', '.join(IO_TYPES)}")
    in_shape = [1, *(int(d) for d in model.inputs[0].shape[1:])]
    input_name = "image"

    def representative() -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(calibration)):
            yield {input_name: calibration[i : i + 1].astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="lenet-edge-savedmodel-") as saved:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name="serve",
            fn=lambda image: model(image, training=False),
            input_signature=[t.TensorSpec(in_shape, t.float32, name=input_name)],
        )
        with quiet_stderr():
            archive.write_out(saved, verbose=False)
        converter = t.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
        converter.optimizations = [t.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter._experimental_disable_per_channel = not per_channel
        types = {"int8": t.int8, "uint8": t.uint8, "float32": t.float32}
        converter.inference_input_type = types[io_type]
        converter.inference_output_type = types[io_type]
        try:
            with quiet_stderr():
                flatbuffer = converter.convert()
        except Exception as exc:  # the converter raises many types; all mean "cannot convert"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LenetEdgeError(
                f"the model cannot be converted to full int8 ({first[:200]})"
            ) from None
    return bytes(flatbuffer)
