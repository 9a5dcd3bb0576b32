"""An exponential moving average of a network's weights (``optim.ema_decay``): validation and
``best.pt`` then use the averaged weights."""
from __future__ import annotations

import copy

import torch


class ExponentialMovingAverage:
    """Shadow weights ``ema = d * ema + (1 - d) * w`` updated after every step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1 - self.decay)
