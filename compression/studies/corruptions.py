"""Corrupted copies of a test split, made on the fly with numpy and Pillow.

In the spirit of ImageNet-C (Hendrycks and Dietterich, 2019) and MNIST-C, on images with
values in [0, 1] (the loaders' scale), shape (n, H, W) or (n, H, W, C). Five severities per
corruption, from mild to strong; a study takes the first few. Geometric sizes (blur radius)
follow the image side, so an 8x8 digit and a 28x28 MNIST digit are blurred alike.
Deterministic: the noise is drawn from the given generator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np

MAX_SEVERITY = 5


@dataclass(frozen=True)
class Corruption:
    name: str
    help: str
    levels: tuple  # the parameter at severities 1..5
    unit: str
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _images(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """(n, H, W, C) float images and whether a channel axis was added."""
    if x.ndim == 3:
        return x[..., None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"corruptions need images (n, H, W) or (n, H, W, C), not shape {list(x.shape)}")


def _per_image(x: np.ndarray, fn) -> np.ndarray:
    """Apply a Pillow function to each image (uint8 in, float out), channel by channel."""
    from PIL import Image

    imgs, added = _images(x)
    out = np.empty_like(imgs, dtype=np.float32)
    u8 = np.clip(np.round(imgs * 255.0), 0, 255).astype(np.uint8)
    for i in range(len(u8)):
        if u8.shape[-1] in (1, 3):
            pic = Image.fromarray(u8[i, ..., 0] if u8.shape[-1] == 1 else u8[i], "L" if u8.shape[-1] == 1 else "RGB")
            res = np.asarray(fn(pic), dtype=np.float32) / 255.0
            out[i] = res[..., None] if u8.shape[-1] == 1 else res
        else:
            for c in range(u8.shape[-1]):
                out[i, ..., c] = np.asarray(fn(Image.fromarray(u8[i, ..., c], "L")), dtype=np.float32) / 255.0
    return out[..., 0] if added else out


def _noise(x, sigma, rng):
    return np.clip(x + rng.normal(0.0, sigma, size=x.shape).astype(np.float32), 0.0, 1.0)


def _blur(x, radius, rng):
    from PIL import ImageFilter

    side = x.shape[2] if x.ndim >= 3 else 28
    r = radius * side / 28.0  # the radius is given for a 28-pixel image
    return _per_image(x, lambda im: im.filter(ImageFilter.GaussianBlur(r)))


def _contrast(x, c, rng):
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    return np.clip((x - mean) * c + mean, 0.0, 1.0).astype(np.float32)


def _brightness(x, delta, rng):
    return np.clip(x + delta, 0.0, 1.0).astype(np.float32)


def _rotate(x, degrees, rng):
    from PIL import Image

    return _per_image(x, lambda im: im.rotate(degrees, resample=Image.BILINEAR))


def _zoom(x, factor, rng):
    from PIL import Image

    def zoom(im):  # an exact zoom about the centre (no rounding of the enlarged size on small images)
        w, h = im.size
        cx, cy = w / 2.0, h / 2.0
        return im.transform((w, h), Image.AFFINE, (1 / factor, 0, cx - cx / factor, 0, 1 / factor, cy - cy / factor),
                            resample=Image.BILINEAR)

    return _per_image(x, zoom)


def _jpeg(x, quality, rng):
    from PIL import Image

    def jpeg(im):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        return Image.open(buf).convert(im.mode)

    return _per_image(x, jpeg)


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("gaussian_noise", "additive Gaussian noise of this standard deviation (values in [0, 1])",
               (0.08, 0.12, 0.18, 0.26, 0.38), "σ", _noise),
    Corruption("blur", "Gaussian blur of this radius in pixels (of a 28-pixel image; scaled to the image side)",
               (0.5, 0.8, 1.1, 1.5, 2.0), "px", _blur),
    Corruption("contrast", "contrast scaled by this factor around each image's mean", (0.4, 0.3, 0.2, 0.1, 0.05),
               "×", _contrast),
    Corruption("brightness", "this much added to every value (then clipped to [0, 1])", (0.1, 0.2, 0.3, 0.4, 0.5),
               "+", _brightness),
    Corruption("rotation", "rotated by this many degrees", (10, 20, 30, 45, 60), "°", _rotate),
    Corruption("zoom", "zoomed in by this factor around the centre (cropped to the same size)",
               (1.1, 1.2, 1.35, 1.5, 1.7), "×", _zoom),
    Corruption("jpeg", "saved as JPEG at this quality", (25, 18, 15, 10, 7), "quality", _jpeg),
]}


def names() -> list[str]:
    return list(CORRUPTIONS)


def corrupt(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``x`` (float images in [0, 1]) with corruption ``name`` at ``severity`` (1..5)."""
    c = CORRUPTIONS[name]
    if not 1 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity {severity} is outside 1..{MAX_SEVERITY}")
    rng = np.random.default_rng([seed, severity, list(CORRUPTIONS).index(name)])
    return c.apply(np.asarray(x, dtype=np.float32), c.levels[severity - 1], rng).astype(np.float32)


def describe(name: str, severity: int) -> str:
    c = CORRUPTIONS[name]
    return f"{c.name} {c.levels[severity - 1]:g} {c.unit}"


__all__ = ["CORRUPTIONS", "Corruption", "MAX_SEVERITY", "corrupt", "describe", "names"]
