"""CCLNN (Liu, Chu, Wei, IEICE 2024) and its ablation variants.

CCLN block (Eq. 2): ``Y = NLSA(PA(X)) + Res(CCA(X))``

* PA, pixel attention (PAN): ``X * sigmoid(conv1x1(X))``.
* CCA, channel contrastive attention: RCAN's channel attention ``W = sigmoid(conv1x1(relu(
  conv1x1(GAP(X)))))`` (reduction 16), ``X * W``; W (N x C) also feeds the auxiliary loss.
* Res: one EDSR ResBlock; NLSA: the NLSN module with its own residual.

With both residuals, at initialisation both gates are about 0.5, so ``Y ~ 0.5 X + 0.5 X = X``:
the block starts near identity (kept on purpose, see SPEC section 1).

The network is EDSR with a CCLN block first and after every 8 ResBlocks (NLSN's layout, CCLN in
place of NLSA). Variants: ``local`` keeps only ``Res(CCA(X))``, ``nonlocal`` only
``NLSA(PA(X))``; ``aux_loss`` picks the contrastive loss (CCLNN), the L1 sparsity loss
(TSparse) or none (NSparse: CCA is plain channel attention).

Auxiliary loss, without changing the inference call: ``model(lr)`` returns the SR image;
``sr, weights = model(lr, return_aux=True)`` also returns the list of CCA weights (one N x C
tensor per CCLN block), and ``model.auxiliary_loss(weights)`` is the mean over blocks of the
configured loss (a zero tensor when there is none). Training uses
``l1(sr, hr) + lambda * model.auxiliary_loss(weights)`` after the warm-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from ..config import ConfigError
from ..losses import contrastive_loss, sparsity_loss
from .common import (RESBLOCK_RENAMES, ChannelAttention, EDSRStyleNet, ResBlock, conv1x1,
                     interleaved_body)
from .network_nlsn import NLSNConfig
from .nlsa import NLSA_RENAMES, NonLocalSparseAttention
from .registry import register


@dataclass(frozen=True)
class CCLNNConfig(NLSNConfig):
    """NLSN's backbone and NLSA settings, plus the CCLN block's."""
    cca_reduction: int = 16
    branches: Literal["both", "local", "nonlocal"] = "both"
    aux_loss: Literal["contrastive", "sparse", "none"] = "contrastive"
    contrast_ratio: Optional[float] = None  # n; None: 0.15 at x2 and x3, 0.10 at x4
    contrast_margin: float = 1.0  # b

    def check(self) -> None:
        if self.branches == "nonlocal" and self.aux_loss != "none":
            raise ConfigError("aux_loss: a 'nonlocal' CCLNN has no CCA block, so aux_loss "
                              "must be 'none'")
        if self.contrast_ratio is not None and not 0 < self.contrast_ratio <= 0.5:
            raise ConfigError(f"contrast_ratio: must be in (0, 0.5], got {self.contrast_ratio}")

    def ratio_for(self, scale: int) -> float:
        if self.contrast_ratio is not None:
            return self.contrast_ratio
        return 0.10 if scale == 4 else 0.15


class PixelAttention(nn.Module):
    """PAN's pixel attention: ``x * sigmoid(conv1x1(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv1x1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class CCLNBlock(nn.Module):
    """``NLSA(PA(X)) + Res(CCA(X))``; returns ``(Y, W)`` (W is None without a CCA branch)."""

    def __init__(self, config: CCLNNConfig, eval_seed: int = 0):
        super().__init__()
        c = config
        self.has_local = c.branches in ("both", "local")
        self.has_nonlocal = c.branches in ("both", "nonlocal")
        if self.has_nonlocal:
            self.pa = PixelAttention(c.channels)
            self.nlsa = NonLocalSparseAttention(c.channels, c.n_hashes, c.chunk_size,
                                                c.reduction, c.res_scale, eval_seed)
        if self.has_local:
            self.cca = ChannelAttention(c.channels, c.cca_reduction)
            self.res = ResBlock(c.channels, c.res_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        y = self.nlsa(self.pa(x)) if self.has_nonlocal else None
        weights = None
        if self.has_local:
            gated, weights = self.cca(x)
            local = self.res(gated)
            y = local if y is None else y.add_(local)  # (add's backward needs neither)
        return y, weights


class CCLNN(EDSRStyleNet):
    def __init__(self, config: CCLNNConfig, scale: int):
        c = config
        super().__init__(scale, c.channels, interleaved_body(
            c.n_resblocks, c.channels, c.res_scale, lambda i: CCLNBlock(c, eval_seed=i)),
            c.rgb_range)
        self.contrast_ratio = c.ratio_for(scale)
        self.aux_loss_kind = c.aux_loss
        self.contrast_margin = c.contrast_margin

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        x = self.head(self.sub_mean(x))
        res = x
        weights: list[torch.Tensor] = []
        for layer in self.body:
            if isinstance(layer, CCLNBlock):
                res, w = layer(res)
                if w is not None:
                    weights.append(w)
            else:
                res = layer(res)
        sr = self.add_mean(self.tail(x + res))
        return (sr, weights) if return_aux else sr

    def auxiliary_loss(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """Mean over CCLN blocks of the configured auxiliary loss on their CCA weights."""
        if self.aux_loss_kind == "none" or not weights:
            device = weights[0].device if weights else self.head[0].weight.device
            return torch.zeros((), device=device)
        if self.aux_loss_kind == "sparse":
            losses = [sparsity_loss(w) for w in weights]
        else:
            losses = [contrastive_loss(w, self.contrast_ratio, self.contrast_margin)
                      for w in weights]
        return torch.stack(losses).mean()


_L = dict(channels=128, n_resblocks=16)
for _name, _defaults, _summary in [
    ("cclnn", CCLNNConfig(), "CCLNN: 256 ch, 32 ResBlocks, 5 CCLN blocks (the paper's network)"),
    ("cclnn-l", CCLNNConfig(**_L), "CCLNN-L: 128 ch, 16 ResBlocks, 3 CCLN blocks (ablations)"),
    ("cclnn-t", CCLNNConfig(channels=64, n_resblocks=8, res_scale=1.0),
     "CCLNN-T: 64 ch, 8 ResBlocks, 2 CCLN blocks (CPU-sized; weights ship with cclnn)"),
    ("cclnn-s", CCLNNConfig(channels=32, n_resblocks=8, res_scale=1.0, rgb_range=1.0,
                            cca_reduction=4),
     "CCLNN-S: 32 ch, 8 ResBlocks, 2 CCLN blocks, CCA hidden 8, [0, 1] (study size of "
     "`cclnn ablate`)"),
    ("cclnn-local", CCLNNConfig(**_L, branches="local"),
     "CCLNN-L, local branch only: Y = Res(CCA(X)) (Table 1)"),
    ("cclnn-nonlocal", CCLNNConfig(**_L, branches="nonlocal", aux_loss="none"),
     "CCLNN-L, non-local branch only: Y = NLSA(PA(X)) (Table 1)"),
    ("cclnn-tsparse", CCLNNConfig(**_L, aux_loss="sparse"),
     "CCLNN-L with L1 sparsity loss on W instead of contrastive (Table 2)"),
    ("cclnn-nsparse", CCLNNConfig(**_L, aux_loss="none"),
     "CCLNN-L without auxiliary loss: plain channel attention (Table 2)"),
]:
    register(_name, _defaults, _summary, RESBLOCK_RENAMES + NLSA_RENAMES,
             "NLSN + 15 % / 14 % / 14 % (paper, Sect. 4.3)" if _name == "cclnn" else "")(CCLNN)
