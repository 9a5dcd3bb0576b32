"""MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601, studio range) on [0, 255] values."""
from __future__ import annotations

import torch

# Rows give Y, Cb, Cr from R, G, B in [0, 255]: MATLAB's coefficients (for [0, 1]) / 255.
RGB_TO_YCBCR = torch.tensor([[65.481, 128.553, 24.966],
                             [-37.797, -74.203, 112.0],
                             [112.0, -93.786, -18.214]], dtype=torch.float64) / 255.0
YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64)
YCBCR_TO_RGB = torch.linalg.inv(RGB_TO_YCBCR)


def _apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", matrix.to(device=x.device, dtype=x.dtype), x)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` RGB in [0, 255] -> YCbCr (Y in [16, 235]), float."""
    offset = YCBCR_OFFSET.to(device=x.device, dtype=x.dtype).view(3, 1, 1)
    return _apply(RGB_TO_YCBCR, x) + offset


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    offset = YCBCR_OFFSET.to(device=x.device, dtype=x.dtype).view(3, 1, 1)
    return _apply(YCBCR_TO_RGB, x - offset)
