"""A2N, attention in attention network (Chen et al., 2021), the official configuration.

16 attention-in-attention blocks (AAB) of 40 channels and a pixel-attention (PA) upsampler of
24 channels; the output is added to the bilinearly upsampled input. An AAB mixes an attention
branch and a plain 3x3 branch with weights from its "attention dropout module" (a small MLP on
the pooled features, softmax with temperature 30). Input and output in [0, 255], no MeanShift
(as the official weights expect). Module names are ours; :data:`A2N_RENAMES` maps the official
checkpoint keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import NetworkConfig
from .registry import register


@dataclass(frozen=True)
class A2NConfig(NetworkConfig):
    channels: int = 40
    up_channels: int = 24
    n_blocks: int = 16
    reduction: int = 4  # attention-dropout MLP reduction
    temperature: float = 30.0


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class AttentionBranch(nn.Module):
    """``k4(k3(x) * sigmoid(k2(lrelu(k1(x)))))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.k1 = _conv(channels, channels, 3, bias=False)
        self.k2 = _conv(channels, channels, 1)
        self.k3 = _conv(channels, channels, 3, bias=False)
        self.k4 = _conv(channels, channels, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.k2(F.leaky_relu(self.k1(x), 0.2)))
        return self.k4(self.k3(x) * gate)


class AttentionInAttentionBlock(nn.Module):
    def __init__(self, config: A2NConfig):
        super().__init__()
        c = config.channels
        self.temperature = config.temperature
        self.conv_in = _conv(c, c, 1, bias=False)
        self.branch_weights = nn.Sequential(
            nn.Linear(c, c // config.reduction, bias=False), nn.ReLU(inplace=True),
            nn.Linear(c // config.reduction, 2, bias=False))
        self.attention = AttentionBranch(c)
        self.non_attention = _conv(c, c, 3, bias=False)
        self.conv_out = _conv(c, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv_in(x), 0.2)
        mix = torch.softmax(self.branch_weights(h.mean(dim=(2, 3))) / self.temperature, dim=1)
        h = (self.attention(h) * mix[:, 0].view(-1, 1, 1, 1)
             + self.non_attention(h) * mix[:, 1].view(-1, 1, 1, 1))
        return x + self.conv_out(F.leaky_relu(h, 0.2))


class PixelAttentionUpsample(nn.Module):
    """Nearest upsampling by ``factor``, conv, pixel attention, conv (each with leaky ReLU)."""

    def __init__(self, cin: int, cout: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = _conv(cin, cout, 3)
        self.pa = _conv(cout, cout, 1)
        self.hr_conv = _conv(cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))
        h = F.leaky_relu(h * torch.sigmoid(self.pa(h)), 0.2)
        return F.leaky_relu(self.hr_conv(h), 0.2)


class A2N(nn.Module):
    def __init__(self, config: A2NConfig, scale: int):
        super().__init__()
        c, u = config.channels, config.up_channels
        self.scale_factor = scale
        self.head = _conv(3, c, 3)
        self.blocks = nn.Sequential(*[AttentionInAttentionBlock(config)
                                      for _ in range(config.n_blocks)])
        self.body_conv = _conv(c, c, 3)
        factors = (2, 2) if scale == 4 else (scale,)
        self.upsample = nn.Sequential(*[PixelAttentionUpsample(c if i == 0 else u, u, f)
                                        for i, f in enumerate(factors)])
        self.tail = _conv(u, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.body_conv(self.blocks(features))
        out = self.tail(self.upsample(features))
        return out + F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear",
                                   align_corners=False)


A2N_RENAMES = (
    (r"^conv_first\.", "head."),
    (r"^AAB_trunk\.", "blocks."),
    (r"\.conv_first\.", ".conv_in."),
    (r"\.conv_last\.", ".conv_out."),
    (r"\.ADM\.", ".branch_weights."),
    (r"^trunk_conv\.", "body_conv."),
    (r"^upconv(\d)\.", lambda m: f"upsample.{int(m.group(1)) - 1}.conv."),
    (r"^att(\d)\.conv\.", lambda m: f"upsample.{int(m.group(1)) - 1}.pa."),
    (r"^HRconv(\d)\.", lambda m: f"upsample.{int(m.group(1)) - 1}.hr_conv."),
    (r"^conv_last\.", "tail."),
)

register("a2n", A2NConfig(), "A2N: 16 attention-in-attention blocks, 40 ch, PA upsampler "
         "(Table 5; official weights load)", A2N_RENAMES)(A2N)
