"""The bridge to lenet-edge's one preprocessing: raw MNIST pixels -> quantized model input.

The standalone engine's ``<prefix>_quantize_mnist`` is a 256-entry table computed here by
running :func:`lenet_edge.data.preprocess` and the input quantization on every pixel value,
so C and Python cannot drift apart (a test checks all 10,000 test images).
"""

from __future__ import annotations

import numpy as np

from firmware_export.c_writer import MnistInput
from lenet_edge.data import preprocess


def quantize_images(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantize preprocessed float32 images: ``round(x / scale) + zero_point``, int8."""
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def mnist_size(shape: tuple[int, ...]) -> int | None:
    """The square input size when raw 28x28 digits can be fed (NHWC [1, S, S, 1], S >= 28,
    even padding), else None."""
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 1 or shape[1] != shape[2]:
        return None
    size = shape[1]
    if size < 28 or (size - 28) % 2:
        return None
    return size


def mnist_input(shape: tuple[int, ...], scale: float, zero_point: int) -> MnistInput | None:
    """The pixel -> int8 table and padding of ``<prefix>_quantize_mnist`` (None if N/A)."""
    size = mnist_size(shape)
    if size is None:
        return None
    probe = np.zeros((1, 28, 28), dtype=np.uint8)
    probe.reshape(-1)[:256] = np.arange(256, dtype=np.uint8)
    q = quantize_images(preprocess(probe, size=size), scale, zero_point)[0, :, :, 0]
    pad = (size - 28) // 2
    inner = q[pad : pad + 28, pad : pad + 28].reshape(-1)
    table = [int(v) for v in inner[:256]]
    pad_value = int(q[0, 0]) if pad else table[0]
    return MnistInput(table, pad_value, pad)


def mnist_inputs(
    images: np.ndarray, shape: tuple[int, ...], scale: float, zero_point: int
) -> np.ndarray:
    """Raw uint8 [N, 28, 28] images -> int8 model inputs [N, S, S, 1]."""
    size = mnist_size(shape)
    if size is None:
        raise ValueError(f"input shape {list(shape)} does not take MNIST digits")
    return quantize_images(preprocess(images, size=size), scale, zero_point)
