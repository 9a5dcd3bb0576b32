"""Reading images as uint8 RGB arrays, with one-line errors that name the file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CclnnError


class ImageError(CclnnError, ValueError):
    """An image file cannot be read; the message names it."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """H x W x 3 uint8 RGB (grayscale and palette images are converted)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None
