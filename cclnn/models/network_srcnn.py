"""SRCNN (Dong et al., 2014/2016) and VDSR (Kim et al., CVPR 2016): pre-upsampling networks.

Both papers run a network on the luminance (Y) of the bicubic-upsampled LR image. Adapted to
the common interface (RGB LR in [0, 255] in, RGB SR out) without changing what the network
sees: the LR image is upsampled with MATLAB-exact bicubic (``cclnn.resize``, float, no
rounding), converted to YCbCr (MATLAB ``rgb2ycbcr``), the network maps Y/255 to the SR
Y/255 (SRCNN directly, VDSR as a residual over the bicubic Y), and Cb/Cr are kept from
bicubic, as in the papers' evaluation. Convolutions are zero-padded ('same') so the output
has exactly s*h x s*w pixels (the original SRCNN is 'valid' and crops 12 pixels).
Parameters therefore match the papers' Y-only networks (SRCNN 9-5-5: 57 K, VDSR: 665 K plus
biases).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from ..color import rgb_to_ycbcr, ycbcr_to_rgb
from ..resize import resize_tensor
from .common import NetworkConfig
from .registry import register


class LuminanceNet(nn.Module):
    """Upsample bicubically, refine Y with ``self.net``, keep bicubic chroma."""

    residual = False

    def __init__(self, scale: int, net: nn.Module):
        super().__init__()
        self.scale_factor = scale
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = resize_tensor(x, float(self.scale_factor))
        ycbcr = rgb_to_ycbcr(up)
        y = ycbcr[:, :1] / 255.0
        refined = self.net(y) + (y if self.residual else 0)
        return ycbcr_to_rgb(torch.cat([refined * 255.0, ycbcr[:, 1:]], dim=1))


@dataclass(frozen=True)
class SRCNNConfig(NetworkConfig):
    channels: int = 64
    mid_channels: int = 32
    kernels: tuple[int, ...] = (9, 5, 5)

    def check(self) -> None:
        if len(self.kernels) != 3 or any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"kernels: expected three odd sizes, got {self.kernels}")


class SRCNN(LuminanceNet):
    def __init__(self, config: SRCNNConfig, scale: int):
        k1, k2, k3 = config.kernels
        net = nn.Sequential(
            nn.Conv2d(1, config.channels, k1, padding=k1 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(config.channels, config.mid_channels, k2, padding=k2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.mid_channels, 1, k3, padding=k3 // 2))
        super().__init__(scale, net)


@dataclass(frozen=True)
class VDSRConfig(NetworkConfig):
    channels: int = 64
    depth: int = 20  # convolution layers

    def check(self) -> None:
        if self.depth < 2:
            raise ConfigError(f"depth: must be at least 2 (first and last layer), got {self.depth}")


class VDSR(LuminanceNet):
    residual = True

    def __init__(self, config: VDSRConfig, scale: int):
        c = config.channels
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        super().__init__(scale, nn.Sequential(*layers))


register("srcnn", SRCNNConfig(), "SRCNN 9-5-5 on bicubic-upsampled Y (Table 5)")(SRCNN)
register("vdsr", VDSRConfig(), "VDSR, 20 layers, residual on bicubic-upsampled Y (Table 5)")(VDSR)
