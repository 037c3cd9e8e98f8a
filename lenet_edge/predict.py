"""Classify a user's own digit pictures, preprocessed as MNIST's digits were.

MNIST's digits were size-normalised to fit a 20×20 box, keeping their aspect ratio (with
anti-aliasing), then placed in a 28×28 field so that their centre of mass sits at the centre
(LeCun et al., 1998; measured on the training set: mean centre of mass (14.0, 14.0) in pixel
coordinates, spread ±0.29, i.e. an integer shift). :func:`mnist_style` does the same to any
picture and returns uint8 28×28, so the rest is the one shared preprocessing
(:func:`lenet_edge.data.preprocess`: zero-pad to 32×32, scale to [0, 1]):

1. grayscale (transparent pixels are composited over the background);
2. the background level is the median of the border; the ink is whatever departs from it, so
   dark-on-light pictures are inverted into MNIST's light-on-dark;
3. contrast is stretched so the strongest ink is 255, and faint noise (JPEG ringing, paper
   texture) below :data:`NOISE_FLOOR` of the contrast is cleared;
4. crop to the ink's bounding box; scale its longer side to 20 px (Lanczos, anti-aliased);
5. paste into 28×28 with the centre of mass at (14, 14), shifted by whole pixels.

No TensorFlow here: images are validated before any model is loaded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lenet_edge.errors import LenetEdgeError, first_line, unreadable_input

if TYPE_CHECKING:
    from lenet_edge.interpreters import TfliteModel

BOX = 20  #: side of the box the digit is scaled into
FIELD = 28  #: side of the MNIST image
CENTRE = 14.0  #: where MNIST's centres of mass sit (row and column, pixel coordinates)
BORDER_FRACTION = 0.03  #: border ring width used to find the background, of the shorter side
MIN_CONTRAST = 24  #: grey levels (of 255) between background and ink below which it is blank
NOISE_FLOOR = 0.08  #: ink weaker than this fraction of the contrast is background noise
MAX_PIXELS = 64_000_000  #: refuse larger pictures (decompression bombs)


class ImageError(LenetEdgeError):
    """A picture that cannot be used: unreadable, not an image, or blank."""


@dataclass(frozen=True)
class Digit:
    """One picture, preprocessed: ``image`` is uint8 28×28, light ink on black."""

    path: Path
    image: np.ndarray
    inverted: bool  # True when the picture had dark ink on a light background
    size: tuple[int, int]  # original (width, height)


def read_grayscale(path: Path) -> np.ndarray:
    """Decode the picture at ``path`` into float64 grey levels in [0, 255] (H×W).

    Raises :class:`ImageError` (one line) when the file is missing, not a picture, truncated or
    corrupted. EXIF orientation is applied; transparency is composited over the colour of the
    opaque border, or over white when the border is transparent and the ink dark (and black
    when the ink is light).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        path.stat()
    except OSError as exc:
        raise ImageError(unreadable_input(path, exc)) from None
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not a picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageError(
                        f"{path}: {im.width}x{im.height} pixels is too large for a digit "
                        f"(limit {MAX_PIXELS:,} pixels); scale it down"
                    )
                im.load()
                arr = _to_gray(ImageOps.exif_transpose(im) or im)
    except ImageError:
        raise
    except _NonFinitePixels as exc:
        bad, total = exc.args
        raise ImageError(
            f"{path}: {bad:,} of {total:,} pixels are NaN or infinite; not a usable picture"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a picture (give a PNG or JPG of a digit)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: too many pixels for a digit picture; scale it down") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = first_line(exc, 120)
        raise ImageError(f"{path}: cannot decode the picture ({detail})") from None
    if arr.size == 0:
        raise ImageError(f"{path}: the picture has no pixels")
    return arr


class _NonFinitePixels(Exception):
    """A float picture with NaN or infinite pixels (args: their count, the pixel count)."""


def _to_gray(im: Any) -> np.ndarray:
    """A PIL image (any mode) -> float64 grey levels in [0, 255]."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise _NonFinitePixels(bad, int(a.size))
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        return np.clip(a * (255.0 / top), 0, 255)
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if not has_alpha:
        return np.asarray(im.convert("L"), dtype=np.float64)
    rgba = im.convert("RGBA").convert("LA")
    lum = np.asarray(rgba.getchannel("L"), dtype=np.float64)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    if alpha.min() >= 1.0:
        return lum
    border = _border(alpha) > 0.5
    if border.mean() >= 0.5:  # opaque border: its own colour is the background
        bg = float(np.median(_border(lum)[border]))
    else:  # transparent background: contrast the opaque pixels with it
        opaque = alpha > 0.5
        ink_level = float(np.average(lum, weights=alpha)) if opaque.any() else 0.0
        bg = 255.0 if ink_level < 128 else 0.0
    return lum * alpha + bg * (1.0 - alpha)


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels of a ring along the edges of ``a`` (width by :data:`BORDER_FRACTION`)."""
    h, w = a.shape
    k = max(1, round(BORDER_FRACTION * min(h, w)))
    k = min(k, max(1, min(h, w) // 2))
    return np.concatenate(
        [a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()]
    )


def ink_map(gray: np.ndarray, name: str = "image") -> tuple[np.ndarray, bool]:
    """Grey levels -> ink strength in [0, 1] (0 = background) and whether the picture was
    dark-on-light (inverted). Raises :class:`ImageError` when there is no ink (blank)."""
    bg = float(np.median(_border(gray)))
    dark = bg - float(gray.min())  # contrast of ink darker than the background
    light = float(gray.max()) - bg  # contrast of ink lighter than the background
    inverted = dark > light
    contrast = max(dark, light)
    if contrast < MIN_CONTRAST:
        raise ImageError(
            f"{name}: blank picture, no digit found (contrast {contrast:.0f} grey levels, "
            f"at least {MIN_CONTRAST} needed)"
        )
    ink = (bg - gray) if inverted else (gray - bg)
    ink = np.clip(ink / contrast, 0.0, 1.0)
    ink = np.clip((ink - NOISE_FLOOR) / (1.0 - NOISE_FLOOR), 0.0, 1.0)
    return ink, inverted


def mnist_style(gray: np.ndarray, name: str = "image") -> tuple[np.ndarray, bool]:
    """Any grayscale picture of one digit -> MNIST-style uint8 28×28 (light ink on black,
    in a 20×20 box, centred by centre of mass), and whether it was inverted."""
    from PIL import Image

    ink, inverted = ink_map(np.asarray(gray, dtype=np.float64), name)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:  # pragma: no cover - ink_map guarantees some ink
        raise ImageError(f"{name}: blank picture, no digit found")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = Image.fromarray(crop.astype(np.float32), mode="F")
    patch = np.asarray(img.resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.float64)
    patch = np.clip(patch, 0.0, 1.0)
    total = patch.sum()
    if total <= 0:
        raise ImageError(f"{name}: blank picture, no digit found after scaling")
    ys, xs = np.indices(patch.shape)
    cy, cx = float((ys * patch).sum() / total), float((xs * patch).sum() / total)
    top = int(np.clip(round(CENTRE - cy), 0, FIELD - nh))
    left = int(np.clip(round(CENTRE - cx), 0, FIELD - nw))
    field = np.zeros((FIELD, FIELD), dtype=np.float64)
    field[top : top + nh, left : left + nw] = patch
    return np.rint(field * 255.0).astype(np.uint8), inverted


def load_digit(path: Path) -> Digit:
    """Read and preprocess one picture (:class:`ImageError` on any problem)."""
    gray = read_grayscale(path)
    image, inverted = mnist_style(gray, str(path))
    return Digit(path, image, inverted, (gray.shape[1], gray.shape[0]))


def load_digits(paths: list[Path]) -> list[Digit]:
    """Preprocess every picture; one :class:`ImageError` naming every unusable one."""
    digits: list[Digit] = []
    problems: list[str] = []
    for p in paths:
        try:
            digits.append(load_digit(p))
        except ImageError as exc:
            problems.append(str(exc))
    if problems:
        shown = "; ".join(problems[:3])
        more = f"; and {len(problems) - 3} more unusable pictures" if len(problems) > 3 else ""
        raise ImageError(shown + more)
    return digits


def top_k(probs: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` most probable classes, highest first (ties: lower class first)."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    order = sorted(range(len(p)), key=lambda c: (-p[c], c))[:k]
    return [(int(c), float(p[c])) for c in order]


def check_model_file(path: Path) -> TfliteModel | Path:
    """Validate ``path`` as a LeNet classifier without TensorFlow; return the parsed model of
    a .tflite, or ``path`` itself for a Keras model (loaded later, by :func:`classify`)."""
    from lenet_edge.errors import ModelFileError
    from lenet_edge.interpreters import check_keras_file, read_tflite, sniff_model_file
    from lenet_edge.verify import NUM_CLASSES, image_side

    kind = sniff_model_file(path)
    if kind == "tflite":
        model = read_tflite(path)
        try:
            image_side(model.input.shape)
        except LenetEdgeError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        if int(np.prod(model.output.shape[1:], dtype=np.int64)) != NUM_CLASSES:
            raise ModelFileError(
                f"{path}: output shape {list(model.output.shape)} is not {NUM_CLASSES} classes"
            )
        return model
    if kind in ("keras", "h5"):
        return check_keras_file(path)
    raise ModelFileError(
        f"{path}: not a model; give the .keras file from `lenet-edge train` or a .tflite "
        "from `lenet-edge quantize`"
    )


def classify(model: TfliteModel | Path, images: np.ndarray) -> tuple[np.ndarray, str]:
    """Class probabilities ``[N, 10]`` of uint8 28×28 ``images`` and a description of how
    they were computed (the Keras model at that path in float, or the .tflite on LiteRT)."""
    from lenet_edge.verify import keras_reference, tflite_reference

    if isinstance(model, Path):
        ref = keras_reference(model, images)
        how = "Keras model (float32)"
    else:
        ref = tflite_reference(model, images)
        how = f"{model.kind} .tflite on LiteRT"
    if ref.softmax_applied:
        how += ", softmax applied to its logits"
    return ref.probs, how


def prediction_record(digit: Digit, probs: np.ndarray) -> dict[str, Any]:
    """JSON form of one prediction."""
    top = top_k(probs, 3)
    return {
        "image": str(digit.path),
        "class": top[0][0],
        "top3": [{"class": c, "probability": round(p, 6)} for c, p in top],
        "probabilities": [round(float(v), 6) for v in np.asarray(probs).ravel()],
        "inverted": digit.inverted,
        "size": list(digit.size),
    }
