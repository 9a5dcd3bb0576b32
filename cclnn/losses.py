"""Auxiliary losses on the channel weights W (N x C, values in (0, 1)) of a CCA block."""
from __future__ import annotations

import math

import torch


def contrast_count(channels: int, ratio: float) -> int:
    """k = max(1, round(ratio * C)), rounding halves up (not Python's banker's rounding)."""
    return max(1, int(math.floor(ratio * channels + 0.5)))


def contrastive_loss(weights: torch.Tensor, ratio: float, margin: float = 1.0) -> torch.Tensor:
    """CCLNN Eqs. 3-4 (ENLCA style): push the top-k channel weights above the bottom-k.

    For each sample, with T = W sorted in descending order and k = contrast_count(C, ratio):
    ``relu(-log(mean(exp(T[:k])) / mean(exp(T[C-k:]))) + margin)``, averaged over the batch.
    """
    if weights.dim() != 2:
        raise ValueError(f"weights must be N x C, got shape {tuple(weights.shape)}")
    channels = weights.shape[1]
    k = contrast_count(channels, ratio)
    ordered = weights.sort(dim=1, descending=True).values
    positive = ordered[:, :k].exp().mean(dim=1)
    negative = ordered[:, channels - k:].exp().mean(dim=1)
    return torch.relu(-torch.log(positive / negative) + margin).mean()


def sparsity_loss(weights: torch.Tensor) -> torch.Tensor:
    """CCLNN-TSparse (Eq. 7): the mean absolute channel weight."""
    return weights.abs().mean()
