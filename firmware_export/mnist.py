"""The one preprocessing and the one input quantization: raw MNIST pixels -> model input.

:func:`preprocess` serves training, calibration, verification, the C test vectors and
``predict`` (``lenet_edge.data`` re-exports it); :func:`quantize_values` is TFLite's QUANTIZE
rounding, used wherever a float image becomes integer input. The standalone engine's
``<prefix>_quantize_mnist`` is a 256-entry table computed here by running both on every pixel
value, so C and Python cannot drift apart (a test checks all 10,000 test images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MnistInput:
    """How raw 28x28 pixels map to the model input (from the Python preprocessing)."""

    table: list[int]  # quantized value of pixel 0..255
    pad_value: int
    pad: int


def preprocess(images: np.ndarray, size: int = 32) -> np.ndarray:
    """The one preprocessing: uint8 ``[N, 28, 28]`` -> float32 NHWC ``[N, size, size, 1]``.

    Zero-pads 28×28 centrally to ``size`` (32 for LeNet-5) and scales to [0, 1]. Used for
    training, calibration, verification and the C test vectors alike.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected uint8 [N, 28, 28] images, got {images.dtype} {images.shape}")
    pad = (size - 28) // 2
    if pad < 0 or size - 28 - pad != pad:
        raise ValueError(f"cannot pad 28x28 to {size}x{size} symmetrically")
    out = np.zeros((images.shape[0], size, size, 1), dtype=np.float32)
    out[:, pad : pad + 28, pad : pad + 28, 0] = images.astype(np.float32) / np.float32(255.0)
    return out


def quantize_values(
    x: np.ndarray, scale: float, zero_point: int, dtype: type = np.int8
) -> np.ndarray:
    """Quantize float ``x`` into the integer ``dtype`` exactly as TFLite's QUANTIZE op does:
    the float32 quotient ``x / scale``, rounded half away from zero (``std::round``), plus the
    zero point, saturated. Ties are detected exactly, not by adding 0.5 in float32 (which
    rounds 0.49999997 up)."""
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.round(v)  # half to even; differs from std::round only on exact ties
    ties = np.abs(v - np.trunc(v)) == np.float32(0.5)
    r[ties] = np.trunc(v[ties]) + np.sign(v[ties])
    info = np.iinfo(dtype)
    return np.clip(r.astype(np.float64) + zero_point, info.min, info.max).astype(dtype)


def quantize_images(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantize preprocessed float32 images to int8 (:func:`quantize_values`)."""
    return quantize_values(x, scale, zero_point, np.int8)


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
