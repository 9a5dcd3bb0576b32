"""Reading and writing images as uint8 arrays, with one-line errors that name the file.

Input policy (what a benchmark or a user's photo may contain):

* grayscale, palette, CMYK and YCbCr images are converted to RGB (``read_image``);
* an alpha channel is dropped with a warning (``read_image``) or returned separately
  (``read_image_with_alpha``, used by ``upscale``);
* 16-bit images are converted to 8 bits (``round(v / 257)``) with a warning; 32-bit float
  images are refused;
* a corrupt or truncated file raises :class:`ImageError` naming it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import CclnnError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImageError(CclnnError, ValueError):
    """An image file cannot be read or written; the message names it."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(arr.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)


def _decode(im: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(pixels H x W x 3 or H x W uint8, alpha H x W or None, was_grayscale)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I" and arr.max(initial=0) > 65535:
            raise ImageError(f"{path}: 32-bit integer images are not supported")
        warnings.warn(f"{path}: 16-bit image converted to 8 bits", stacklevel=3)
        return _sixteen_to_eight(arr), None, True
    if mode == "F":
        raise ImageError(f"{path}: floating-point images are not supported")
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode == "L":
        return np.array(im), None, True
    if mode in ("LA", "La"):
        arr = np.array(im.convert("LA"))
        return arr[..., 0], arr[..., 1], True
    if mode in ("RGBA", "RGBa", "PA"):
        arr = np.array(im.convert("RGBA"))
        return arr[..., :3].copy(), arr[..., 3].copy(), False
    return np.array(im.convert("RGB")), None, False


def _open(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, bool, Image.Image]:
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            pixels, alpha, gray = _decode(im, path)
            return pixels, alpha, gray, im
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: not a readable image ({exc})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """H x W x 3 uint8 RGB. Grayscale is replicated, alpha dropped with a warning."""
    pixels, alpha, _, _ = _open(path)
    if alpha is not None:
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=2)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return pixels


def read_image_with_alpha(path: str | os.PathLike):
    """(pixels H x W x 3 uint8, alpha H x W uint8 or None, was_grayscale, PIL image info)."""
    pixels, alpha, gray, im = _open(path)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return pixels, alpha, gray, im


def write_image(path: str | os.PathLike, img: np.ndarray, **save_options) -> None:
    """Write uint8 H x W (x 3 or 4) atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image format '{path.suffix}'")
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(img).save(tmp, format=fmt, **save_options)
    except (OSError, TypeError, ValueError) as exc:
        raise ImageError(f"{path}: cannot write ({exc})") from None
