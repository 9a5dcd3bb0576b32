"""RCAN (Zhang et al., ECCV 2018): residual groups of residual channel-attention blocks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import ChannelAttention, EDSRStyleNet, NetworkConfig, conv3x3
from .registry import register


@dataclass(frozen=True)
class RCANConfig(NetworkConfig):
    channels: int = 64
    n_resgroups: int = 10
    n_resblocks: int = 20  # RCABs per group
    reduction: int = 16  # channel-attention reduction
    res_scale: float = 1.0
    rgb_range: float = 255.0  # value range of the weights: 255, or 1 as the official NLSN


class RCAB(nn.Module):
    """``x + res_scale * CA(conv(relu(conv(x))))``."""

    def __init__(self, channels: int, reduction: int, res_scale: float):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.ca = ChannelAttention(channels, reduction)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated, _ = self.ca(self.conv2(self.relu(self.conv1(x))))
        return x + self.res_scale * gated


class ResidualGroup(nn.Module):
    def __init__(self, config: RCANConfig):
        super().__init__()
        c = config
        self.body = nn.Sequential(*[RCAB(c.channels, c.reduction, c.res_scale)
                                    for _ in range(c.n_resblocks)], conv3x3(c.channels, c.channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RCAN(EDSRStyleNet):
    def __init__(self, config: RCANConfig, scale: int):
        super().__init__(scale, config.channels,
                         [ResidualGroup(config) for _ in range(config.n_resgroups)],
                         config.rgb_range)


# Official RCAB: body = [conv, ReLU, conv, CALayer(conv_du = [conv, ReLU, conv, Sigmoid])].
RCAN_RENAMES = ((r"\.body\.0\.(weight|bias)$", r".conv1.\1"),
                (r"\.body\.2\.(weight|bias)$", r".conv2.\1"),
                (r"\.body\.3\.conv_du\.0\.(weight|bias)$", r".ca.squeeze.\1"),
                (r"\.body\.3\.conv_du\.2\.(weight|bias)$", r".ca.excite.\1"))

register("rcan", RCANConfig(), "RCAN: 10 groups x 20 RCABs, 64 ch (Table 5)", RCAN_RENAMES)(RCAN)
register("rcan-s", RCANConfig(channels=32, n_resgroups=2, n_resblocks=4, reduction=4,
                              rgb_range=1.0),
         "RCAN-S: 2 groups x 4 RCABs, 32 ch, CA hidden 8, [0, 1] (study size of `cclnn ablate`)",
         RCAN_RENAMES)(RCAN)
