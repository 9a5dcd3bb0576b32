"""Reading and writing images as uint8 arrays, with one-line errors that name the file.

Input policy (what a benchmark or a user's photo may contain), the same for files, PIL images
and arrays (:func:`decode_image`, :func:`decode_array`):

* grayscale, palette, CMYK and YCbCr images are converted to RGB (``read_image``);
* an alpha channel is dropped with a warning (``read_image``) or returned separately
  (``read_image_with_alpha``, used by ``upscale``);
* 16-bit images (gray, RGB and RGBA PNGs, uint16 arrays) are converted to 8 bits
  (``round(v / 257)``) with a warning; 32-bit float images are refused;
* animated images (GIF, WebP, APNG with more than one frame) are refused: keeping frame 1
  would silently drop the rest, and the outputs are still images;
* an image over ``max_pixels`` is refused from its header, before it is decoded (PIL's own
  decompression-bomb limit is replaced by this one);
* a corrupt or truncated file, or a file that is not an image whatever its suffix, raises
  :class:`ImageError` naming it.
"""
from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import CclnnError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DEFAULT_MAX_PIXELS = 2 * 89_478_485  # PIL's decompression-bomb error threshold
EXIF_ORIENTATION = 0x0112


class ImageError(CclnnError, ValueError):
    """An image file cannot be read or written; the message names it."""


@dataclass(frozen=True)
class ImageMeta:
    """What a photo carries besides pixels, for the output: ICC profile, EXIF (orientation
    already applied to the pixels, so the tag says 1; PNG, JPEG and WebP), resolution (the
    same DPI: the print grows with the pixels)."""
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    def save_options(self, fmt: str) -> dict:
        """The keyword arguments of PIL's ``save`` that carry this to format ``fmt``."""
        options: dict = {}
        if fmt not in ("PNG", "JPEG", "WEBP", "TIFF"):
            return options
        if self.icc_profile:
            options["icc_profile"] = self.icc_profile
        if self.exif and fmt != "TIFF":  # a TIFF's EXIF tags are its own image's tags
            options["exif"] = self.exif
        if self.dpi and fmt != "WEBP":
            options["dpi"] = self.dpi
        return options


def is_image_file(path: Path) -> bool:
    """By suffix (which files of a folder to take); the content is checked when read."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(arr.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)


def _split_alpha(arr: np.ndarray, gray: bool) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(pixels, alpha or None, was_grayscale) of an H x W (x 1, 2, 3 or 4) array."""
    gray = gray or arr.ndim == 2 or arr.shape[2] in (1, 2)
    if arr.ndim == 2 or arr.shape[2] == 1:
        return np.ascontiguousarray(arr.reshape(arr.shape[:2])), None, gray
    if arr.shape[2] == 2:
        return np.ascontiguousarray(arr[..., 0]), np.ascontiguousarray(arr[..., 1]), gray
    alpha = np.ascontiguousarray(arr[..., 3]) if arr.shape[2] == 4 else None
    return np.ascontiguousarray(arr[..., :3]), alpha, gray


def decode_array(arr: np.ndarray, name: str = "image") -> tuple[np.ndarray, np.ndarray | None,
                                                                 bool]:
    """(pixels H x W x 3 or H x W uint8, alpha H x W or None, was_grayscale) of a numpy image:
    H x W, H x W x 1 (gray), x 2 (gray + alpha), x 3 (RGB), x 4 (RGBA); uint8, or uint16
    converted like a 16-bit file."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"{name}: expected H x W or H x W x 1/2/3/4, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{name}: empty image ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if arr.dtype == np.uint16:
        warnings.warn(f"{name}: 16-bit image converted to 8 bits", stacklevel=3)
        arr = _sixteen_to_eight(arr)
    elif arr.dtype != np.uint8:
        raise ImageError(f"{name}: expected uint8 (or uint16) pixels, got {arr.dtype}")
    return _split_alpha(arr, False)


def _wide_png(im: Image.Image) -> np.ndarray | None:
    """All 16 bits of a 16-bit RGB(A) PNG, which PIL reads as its high bytes: the same file
    decoded once more with the little-endian unpacker gives the low bytes. None otherwise."""
    if im.format != "PNG" or len(im.tile) != 1 or im.tile[0].args not in ("RGB;16B",
                                                                          "RGBA;16B"):
        return None
    tile = im.tile[0]
    with Image.open(im.filename) as low:
        low.tile = [tile._replace(args=tile.args.replace("16B", "16L"))]
        low.load()
        low_bytes = np.asarray(low)
    im.load()
    return np.asarray(im).astype(np.uint16) * 256 + low_bytes


def decode_image(im: Image.Image, name: str = "image") -> tuple[np.ndarray, np.ndarray | None,
                                                                bool]:
    """(pixels H x W x 3 or H x W uint8, alpha H x W or None, was_grayscale) of a PIL image."""
    mode = im.mode
    if im.width == 0 or im.height == 0:
        raise ImageError(f"{name}: empty image ({im.width}x{im.height} pixels)")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I" and (arr.max(initial=0) > 65535 or arr.min(initial=0) < 0):
            raise ImageError(f"{name}: 32-bit integer images are not supported")
        return decode_array(arr.astype(np.uint16), name)[0], None, True
    if mode == "F":
        raise ImageError(f"{name}: floating-point images are not supported")
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode == "L":
        return np.array(im), None, True
    if mode in ("LA", "La", "PA"):
        arr = np.array(im.convert("LA") if mode != "PA" else im.convert("RGBA"))
        return _split_alpha(arr, mode != "PA")
    if mode in ("RGBA", "RGBa"):
        return _split_alpha(np.array(im.convert("RGBA")), False)
    return np.array(im.convert("RGB")), None, False


_PIL_LIMIT = threading.Lock()  # PIL's bomb limit is a global: swapped only under this lock


def _open_unlimited(path: Path) -> Image.Image:
    """``Image.open`` with PIL's own decompression-bomb check off (it runs in ``open``, on
    the header; :func:`open_image` applies ``max_pixels`` instead), safe across threads."""
    with _PIL_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> Iterator[Image.Image]:
    """The PIL image of ``path``, header read, pixels not yet decoded; refused (one line
    naming it) when it is not an image, animated, empty or over ``max_pixels``."""
    path = Path(path)
    try:
        with _open_unlimited(path) as im:
            w, h = im.size
            if w == 0 or h == 0:
                raise ImageError(f"{path}: empty image ({w}x{h} pixels)")
            if max_pixels and w * h > max_pixels:
                raise ImageError(f"{path}: {w}x{h} pixels ({w * h / 1e6:.0f} Mpx) is over the "
                                 f"limit of {max_pixels / 1e6:.0f} Mpx")
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise ImageError(f"{path}: animated image ({frames} frames); only still "
                                 f"images are supported")
            yield im
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: not a readable image ({exc})") from None


def image_size(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> tuple[int, int]:
    """(width, height) of an image file from its header, after :func:`open_image`'s checks;
    EXIF orientation is not applied."""
    with open_image(path, max_pixels) as im:
        return im.size


def _meta(im: Image.Image) -> ImageMeta:
    """The metadata of an upright image; EXIF only where it is a block of its own (JPEG, PNG, WebP), not
    a TIFF's image tags."""
    exif = im.getexif() if im.info.get("exif") else None
    if exif is not None:
        exif[EXIF_ORIENTATION] = 1  # the pixels are upright
    dpi = im.info.get("dpi")
    return ImageMeta(im.info.get("icc_profile") or None, exif.tobytes() if exif else None,
                     tuple(float(v) for v in dpi) if dpi else None)


def _open(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
          ) -> tuple[np.ndarray, np.ndarray | None, bool, ImageMeta]:
    path = Path(path)
    with open_image(path, max_pixels) as im:
        wide = _wide_png(im)
        if wide is not None:
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                raise ImageError(f"{path}: a 16-bit RGB PNG with an EXIF orientation is not "
                                 f"supported")
            pixels, alpha, gray = decode_array(wide, str(path))
            return pixels, alpha, gray, _meta(im)
        im.load()
        upright = ImageOps.exif_transpose(im)
        pixels, alpha, gray = decode_image(upright, str(path))
        return pixels, alpha, gray, _meta(upright)


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> np.ndarray:
    """H x W x 3 uint8 RGB. Grayscale is replicated, alpha dropped with a warning."""
    pixels, alpha, _, _ = _open(path, max_pixels)
    if alpha is not None:
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=2)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return pixels


def read_image_with_alpha(path: str | os.PathLike,
                          max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """(pixels H x W or H x W x 3 uint8, alpha H x W uint8 or None, was_grayscale,
    :class:`ImageMeta`)."""
    return _open(path, max_pixels)


def write_image(path: str | os.PathLike, img: np.ndarray, *, replace: bool = True,
                meta: ImageMeta | None = None, **save_options) -> None:
    """Write uint8 H x W (x 2, 3 or 4) atomically: a temp file in the same folder, then
    published; with ``replace=False`` an existing file (even one made meanwhile) stays and
    :class:`FileExistsError` is raised."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image format '{path.suffix}'")
    options = {**(meta.save_options(fmt) if meta else {}), **save_options}
    try:
        with atomic_path(path, replace=replace) as tmp:
            Image.fromarray(img).save(tmp, format=fmt, **options)
    except FileExistsError:
        raise
    except (OSError, TypeError, ValueError) as exc:
        raise ImageError(f"{path}: cannot write ({exc})") from None
