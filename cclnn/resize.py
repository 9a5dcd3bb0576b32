"""MATLAB ``imresize(img, scale, 'bicubic')``, bit-exact on uint8 images.

MATLAB's algorithm, reproduced here:

* cubic kernel with a = -0.5; when shrinking (scale < 1) the kernel is stretched by 1/scale
  (antialiasing), so a x1/4 output pixel mixes 18 input pixels per axis;
* output size ``ceil(scale * size)``; output pixel x (1-based) samples input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)``; weights are normalised to sum to 1;
* out-of-range taps are clamped to the first/last pixel (edge replication, as current MATLAB
  releases do); ports that mirror the border (e.g. BasicSR's, after old MATLAB releases)
  differ from the MATLAB-made benchmark LR images at the image borders;
* rows are resized first, then columns (MATLAB orders dimensions by scale, a stable sort);
* for uint8 input the intermediate result after the first pass is rounded to uint8 (MATLAB's
  resize MEX returns the input's class), and the final result too; rounding is half away
  from zero with saturation.

Float inputs (numpy or torch, any device, batched ``[..., H, W]`` tensors) use the same
weights without rounding and stay differentiable, for training-time use.

:func:`degrade` is the HR -> LR degradation of every benchmark and training pair: crop to a
multiple of the scale (:func:`mod_crop`), then this resize by 1/scale.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=64)
def contributions(in_length: int, out_length: int, scale: float,
                  antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), both [out_length, taps]: 0-based input rows and their weights."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def kernel(x):
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    indices = np.clip(indices.astype(np.int64) - 1, 0, in_length - 1)
    keep = np.any(weights != 0, axis=0)
    return np.ascontiguousarray(indices[:, keep]), np.ascontiguousarray(weights[:, keep])


def output_size(size: int, scale: float) -> int:
    return int(math.ceil(scale * size - 1e-9))


def _round_uint8(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5).clamp(0, 255)


def _resize_dim(x: torch.Tensor, dim: int, scale: float, antialias: bool) -> torch.Tensor:
    """Resize one axis. The axis is moved to the front so that every tap gathers whole
    contiguous slabs (one ``index_select`` + one in-place multiply-add per tap)."""
    moved = x.movedim(dim, 0).contiguous()
    in_length = moved.shape[0]
    idx_np, w_np = contributions(in_length, output_size(in_length, scale), float(scale), antialias)
    idx = torch.from_numpy(idx_np).to(x.device)
    weights = torch.from_numpy(w_np).to(device=x.device, dtype=x.dtype)
    out = torch.zeros((idx.shape[0],) + moved.shape[1:], dtype=x.dtype, device=x.device)
    shape = (idx.shape[0],) + (1,) * (moved.dim() - 1)
    for tap in range(idx.shape[1]):
        out = out.addcmul(moved.index_select(0, idx[:, tap]), weights[:, tap].view(shape))
    return out.movedim(0, dim)


def resize_axes(x: torch.Tensor, dims: tuple[int, int], scale: float, antialias: bool = True,
                round_to_uint8: bool = False) -> torch.Tensor:
    """Resize the (rows, columns) axes ``dims`` of a float tensor, rows first (MATLAB order).

    Differentiable. ``round_to_uint8`` reproduces MATLAB's uint8 arithmetic (rounding after
    each pass; values expected in [0, 255]).
    """
    if not torch.is_floating_point(x):
        raise TypeError("resize expects a floating-point tensor")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    for dim in dims:
        x = _resize_dim(x, dim, scale, antialias)
        if round_to_uint8:
            x = _round_uint8(x)
    return x.contiguous()


def resize_tensor(x: torch.Tensor, scale: float, antialias: bool = True,
                  round_to_uint8: bool = False) -> torch.Tensor:
    """Resize the last two axes of a float tensor ``[..., H, W]`` (see :func:`resize_axes`)."""
    return resize_axes(x, (-2, -1), scale, antialias, round_to_uint8)


def imresize(img, scale: float, antialias: bool = True):
    """MATLAB ``imresize(img, scale, 'bicubic')``.

    * uint8 numpy H x W or H x W x C: bit-exact MATLAB result, uint8.
    * float numpy arrays: same layout, float64 result, no rounding or clipping.
    * torch tensors ``[..., H, W]`` (e.g. N x C x H x W batches on any device): same dtype,
      differentiable; uint8 tensors are resized exactly like uint8 arrays.
    """
    if isinstance(img, torch.Tensor):
        if img.dtype == torch.uint8:
            out = resize_tensor(img.double(), scale, antialias, round_to_uint8=True)
            return out.to(torch.uint8)
        return resize_tensor(img, scale, antialias)
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C image, got shape {arr.shape}")
    is_uint8 = arr.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"expected a uint8 or float image, got dtype {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    out = resize_axes(t, (0, 1), scale, antialias, round_to_uint8=is_uint8).numpy()
    return out.astype(np.uint8) if is_uint8 else out


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """``img`` cropped at the bottom and right to a multiple of ``scale`` (H x W x ...)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR image of the benchmark protocol: ``hr`` cropped to a multiple of ``scale``, then
    MATLAB ``imresize(hr, 1/scale, 'bicubic')`` (bit-exact on uint8)."""
    return imresize(mod_crop(hr, scale), 1 / scale)
