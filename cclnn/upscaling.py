"""Upscaling any image: :func:`upscale`, and the file handling of ``cclnn upscale``
(:mod:`cclnn.cli.upscale`).

What happens to an image:

* EXIF orientation is applied first (the output is stored upright, without the tag);
* grayscale in, grayscale out: the network sees the gray values replicated to RGB and the
  result is converted back (ITU-R 601 luma, as PIL's ``convert("L")``);
* an alpha channel is upscaled with MATLAB-exact bicubic and reattached;
* 16-bit images are converted to 8 bits (with a warning) and written as 8-bit;
* large images are processed in tiles (``tile="auto"``: 1024 / scale LR pixels, i.e. 512 at
  x2 and 256 at x4, with 16 pixels of context, when a side is larger), so the network's memory
  is bounded by the tile's output size, not the image;
* outputs keep the input's format (PNG, JPEG, WebP, TIFF, ...), are written atomically, and
  an existing file is never replaced without ``overwrite``.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from .data.images import is_image_file, read_image_with_alpha, write_image
from .errors import CclnnError
from .factory import SHIPPED, create_model
from .inference import resolve_device, super_resolve
from .models.descriptor import describe
from .resize import imresize

AUTO_TILE_HR = 1024  # HR pixels per tile side: the upsampler's tensors grow with scale^2
TILE_OVERLAP = 16
DEFAULT_MODEL = "cclnn-t"
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


class UpscaleError(CclnnError):
    """One input could not be upscaled; the message names it."""


def _network(model: Union[str, torch.nn.Module], scale: int, weights=None) -> torch.nn.Module:
    """:func:`upscale`'s network: a registered name, through :func:`cclnn.create_model` (with
    ``weights`` or its shipped weights; on the CPU, as it has always been), or a module (used
    as is; if cclnn built it, for ``scale``)."""
    if isinstance(model, torch.nn.Module):
        info = describe(model)
        if info is not None and info.scale != scale:
            raise UpscaleError(f"the model is for x{info.scale}, not x{scale}")
        return model.eval()
    return create_model(model, scale, weights or SHIPPED)


def _tile_for(shape: tuple[int, int], tile, scale: int, limit: int | None = None) -> int:
    """LR tile side for ``tile`` ("auto" or a number, 0 = whole image); 0 means untiled.

    ``limit`` is the network's own ``max_tile`` (RNAN's descriptor), which "auto" respects."""
    if tile == "auto":
        size = min(AUTO_TILE_HR // scale, limit or AUTO_TILE_HR)
        return size if max(shape) > size else 0
    return int(tile)


def upscale_array(rgb: np.ndarray, net: torch.nn.Module, scale: int, *, tile="auto",
                  device="auto", self_ensemble: bool = False) -> np.ndarray:
    """uint8 H x W x 3 -> uint8 sH x sW x 3."""
    info = describe(net)
    return super_resolve(net, rgb, scale, tile=_tile_for(rgb.shape[:2], tile, scale,
                                                         info.max_tile if info else None),
                         overlap=TILE_OVERLAP, ensemble=self_ensemble,
                         device=resolve_device(device) if isinstance(device, str) else device)


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    return imresize(alpha.astype(np.float64), scale).round().clip(0, 255).astype(np.uint8)


def upscale(image, scale: int = 2, model: Union[str, torch.nn.Module] = DEFAULT_MODEL,
            weights=None, *, tile="auto", device="auto", self_ensemble: bool = False):
    """Upscale a PIL image or a uint8 numpy array (H x W, H x W x 3 or H x W x 4); returns
    the same type. ``model`` is a registered name (default: the shipped CCLNN-T) or a module.
    """
    net = _network(model, scale, weights)
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode not in ("L", "RGB", "RGBA", "LA"):
            image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
        out = upscale(np.asarray(image), scale, net, tile=tile, device=device,
                      self_ensemble=self_ensemble)
        return Image.fromarray(out)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise UpscaleError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        rgb = np.repeat(arr[..., None], 3, axis=2)
        return _to_gray(upscale_array(rgb, net, scale, tile=tile, device=device,
                                      self_ensemble=self_ensemble))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise UpscaleError(f"expected H x W, H x W x 3 or H x W x 4, got shape {arr.shape}")
    sr = upscale_array(np.ascontiguousarray(arr[..., :3]), net, scale, tile=tile,
                       device=device, self_ensemble=self_ensemble)
    if arr.shape[2] == 4:
        sr = np.dstack([sr, _upscale_alpha(arr[..., 3], scale)])
    return sr


def upscale_file(source: Path, target: Path, net, scale: int, *, overwrite: bool = False,
                 tile="auto", device="auto", self_ensemble: bool = False) -> None:
    if target.exists() and not overwrite:
        raise UpscaleError(f"{target}: exists (use --overwrite to replace it)")
    rgb, alpha, gray, original = read_image_with_alpha(source)
    sr = upscale_array(rgb, net, scale, tile=tile, device=device, self_ensemble=self_ensemble)
    if gray:
        sr = _to_gray(sr)
    if alpha is not None:
        sr = np.dstack([sr, _upscale_alpha(alpha, scale)])
    fmt = Image.registered_extensions().get(target.suffix.lower(), "")
    if fmt == "JPEG" and sr.ndim == 3 and sr.shape[2] in (2, 4):
        sr = sr[..., :-1] if sr.shape[2] == 4 else sr[..., 0]  # JPEG has no alpha
    write_image(target, sr, **SAVE_OPTIONS.get(fmt, {}))


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Files from files, folders (their image files) and globs; plus one error per miss."""
    files, errors = [], []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not found:
                errors.append(f"{path}: no image files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                errors.append(f"{item}: no file matches")
            files += found
        else:
            errors.append(f"{path}: file not found")
    return list(dict.fromkeys(files)), errors


def output_path(source: Path, out: str | None, scale: int, single: bool) -> Path:
    name = f"{source.stem}_x{scale}{source.suffix}"
    if out is None:
        return source.with_name(name)
    target = Path(out)
    if single and not target.is_dir() and target.suffix and is_image_file(target):
        return target
    return target / name


__all__ = ["upscale", "upscale_file"]
