"""PSNR and SSIM exactly as SR papers report them (SPEC section 4).

Convention: both images uint8 RGB (grayscale replicated to three channels), the HR image
cropped to the SR size (a multiple of the scale), luminance ``Y = 16 + (65.481 R + 128.553 G +
24.966 B) / 255`` kept as float in [0, 255] (MATLAB ``rgb2ycbcr``), ``scale`` pixels shaved on
every border. PSNR = ``10 log10(255^2 / MSE)``. SSIM (Wang et al. 2004, the authors'
``ssim_index.m``): 11x11 Gaussian window with sigma 1.5, K = (0.01, 0.03), L = 255, 'valid'
filtering, no downsampling, mean of the SSIM map. Each image is scored, then images averaged.

:func:`psnr` / :func:`ssim` take uint8 numpy images; :func:`psnr_batch` / :func:`ssim_batch`
take N x 3 x H x W float tensors in [0, 255] (any device) for validation during training and
round them to integers first, so they agree with the uint8 functions.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .color import RGB_TO_YCBCR
from .errors import CclnnError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)
PEAK = 255.0


class MetricError(CclnnError, ValueError):
    """Two images that cannot be scored (shapes, or too small for the shave and window)."""


def _as_rgb_tensor(img: np.ndarray, what: str) -> torch.Tensor:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise TypeError(f"{what}: expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected H x W or H x W x 3, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].double()


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W RGB in [0, 255] -> N x H x W float Y in [16, 235]."""
    coeffs = RGB_TO_YCBCR[0].to(device=rgb.device, dtype=rgb.dtype)
    return 16.0 + torch.einsum("c,nchw->nhw", coeffs, rgb)


def _prepare(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape[-2] > hr.shape[-2] or sr.shape[-1] > hr.shape[-1]:
        raise MetricError(f"SR image {tuple(sr.shape[-2:])} is larger than HR "
                          f"{tuple(hr.shape[-2:])}")
    hr = hr[..., : sr.shape[-2], : sr.shape[-1]]
    # contiguous copies: the luminance sums then do not depend on how each image was stored
    y_sr, y_hr = luminance(sr.double().contiguous()), luminance(hr.double().contiguous())
    if shave:
        y_sr, y_hr = y_sr[:, shave:-shave, shave:-shave], y_hr[:, shave:-shave, shave:-shave]
    if y_sr.numel() == 0:
        raise MetricError(f"image {tuple(hr.shape[-2:])} too small for the border shave of "
                          f"{shave} pixels")
    return y_sr, y_hr


def _psnr_y(y_sr: torch.Tensor, y_hr: torch.Tensor) -> torch.Tensor:
    mse = (y_sr - y_hr).square().mean(dim=(-2, -1))
    return 10 * torch.log10(PEAK ** 2 / mse)  # inf for identical images


def gaussian_kernel_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (normalised to sum 1)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_y(y_sr: torch.Tensor, y_hr: torch.Tensor) -> torch.Tensor:
    g = gaussian_kernel_1d().to(y_sr.device)
    column, row = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)
    c1, c2 = (SSIM_K[0] * PEAK) ** 2, (SSIM_K[1] * PEAK) ** 2
    a, b = y_sr[:, None], y_hr[:, None]
    if a.shape[-1] < SSIM_WINDOW or a.shape[-2] < SSIM_WINDOW:
        raise MetricError(f"image {tuple(a.shape[-2:])} after the border shave is too small "
                          f"for the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window")

    def blur(t):  # the 2-D Gaussian is separable: two 1-D passes, 'valid'
        return F.conv2d(F.conv2d(t, column), row)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(-3, -2, -1))


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return x.detach().double().clamp(0, PEAK).round()


def psnr_batch(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Per-image Y PSNR of N x 3 x H x W tensors in [0, 255] (rounded to integers first)."""
    return _psnr_y(*_prepare(_quantise(sr), _quantise(hr), scale))


def ssim_batch(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Per-image Y SSIM of N x 3 x H x W tensors in [0, 255] (rounded to integers first)."""
    return _ssim_y(*_prepare(_quantise(sr), _quantise(hr), scale))


def psnr(hr: np.ndarray, sr: np.ndarray, scale: int) -> float:
    """Y PSNR of two uint8 images (H x W or H x W x 3), shaving ``scale`` pixels."""
    value = _psnr_y(*_prepare(_as_rgb_tensor(sr, "sr"), _as_rgb_tensor(hr, "hr"), scale))
    return float(value[0])


def ssim(hr: np.ndarray, sr: np.ndarray, scale: int) -> float:
    """Y SSIM of two uint8 images (H x W or H x W x 3), shaving ``scale`` pixels."""
    return float(_ssim_y(*_prepare(_as_rgb_tensor(sr, "sr"), _as_rgb_tensor(hr, "hr"), scale))[0])

