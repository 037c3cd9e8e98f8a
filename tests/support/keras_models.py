"""Models of other origins than lenet-edge's own training, shared by the tests that need them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def keras_tutorial_models(mnist: Any, out_dir: Path) -> dict[str, Path]:
    """The LeNet-5 of the common Keras tutorial, trained briefly, converted twice."""
    from lenet_edge import data
    from lenet_edge.tfenv import tf

    t = tf()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(6, 5, padding="same", activation="tanh"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Conv2D(16, 5, activation="tanh"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="tanh"),
            keras.layers.Dense(84, activation="tanh"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    x = data.preprocess(mnist.x_train[:6000], size=28)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, mnist.y_train[:6000], epochs=1, batch_size=64, verbose=0)
    paths = {}
    for name, per_channel in (("keras_per_tensor", False), ("keras_per_channel", True)):
        conv = t.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [t.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[i : i + 1]] for i in range(100))
        conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = t.int8
        conv.inference_output_type = t.int8
        conv._experimental_disable_per_channel = not per_channel
        from firmware_export.sysutil import quiet_stderr

        with quiet_stderr():
            flat = conv.convert()
        paths[name] = out_dir / f"{name}.tflite"
        paths[name].write_bytes(flat)
    return paths
