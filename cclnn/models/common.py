"""Building blocks shared by the EDSR-style networks (EDSR, RCAN, NLSN, CCLNN).

All networks in cclnn take and return float RGB in [0, 255] (EDSR-PyTorch's ``rgb_range=255``),
so checkpoints of the official implementations load unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

RGB_RANGE = 255.0
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class MeanShift(nn.Conv2d):
    """Subtract (sign=-1) or add (sign=+1) the DIV2K mean, as a frozen 1x1 conv.

    Kept as a convolution with frozen parameters, as in EDSR-PyTorch, so that official
    checkpoints (which store ``sub_mean.weight`` / ``sub_mean.bias``) load key for key and
    the parameter counts include its 24 numbers.
    """

    def __init__(self, sign: int, mean=DIV2K_MEAN, rgb_range: float = RGB_RANGE):
        super().__init__(3, 3, 1)
        with torch.no_grad():
            if self.weight.device.type != "meta":
                self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                self.bias.copy_(sign * rgb_range * torch.tensor(mean))
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """EDSR residual block: ``x + res_scale * conv(relu(conv(x)))``."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(self.relu(self.conv1(x)))


# EDSR-PyTorch's ResBlock keeps its convs in a Sequential named ``body`` (indices 0 and 2).
RESBLOCK_RENAMES = ((r"\.body\.0\.(weight|bias)$", r".conv1.\1"),
                    (r"\.body\.2\.(weight|bias)$", r".conv2.\1"))


class ChannelAttention(nn.Module):
    """RCAN channel attention ``x * W``, ``W = sigmoid(conv1x1(relu(conv1x1(GAP(x)))))``.

    Returns ``(x * W, W)`` with W flattened to N x C: RCAN ignores W, CCLNN's CCA (the same
    layer) feeds it to its auxiliary loss.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.squeeze = conv1x1(channels, channels // reduction)
        self.relu = nn.ReLU(inplace=True)
        self.excite = conv1x1(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        weights = torch.sigmoid(self.excite(self.relu(self.squeeze(pooled))))
        return x * weights, weights.flatten(1)


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: conv to s^2 C channels + pixel shuffle (twice x2 for x4)."""

    def __init__(self, scale: int, channels: int):
        layers: list[nn.Module] = []
        if scale in (2, 4):
            for _ in range(int(math.log2(scale))):
                layers += [conv3x3(channels, 4 * channels), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(channels, 9 * channels), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"unsupported scale {scale}")
        super().__init__(*layers)


class EDSRStyleNet(nn.Module):
    """The EDSR skeleton every EDSR-derived network of the paper shares.

    ``sub_mean -> head conv -> body (blocks + conv) + head output -> tail (upsampler, conv)
    -> add_mean``. Subclasses only decide what goes into ``body``.
    """

    def __init__(self, scale: int, channels: int, body: list[nn.Module]):
        super().__init__()
        self.sub_mean = MeanShift(-1)
        self.head = nn.Sequential(conv3x3(3, channels))
        self.body = nn.Sequential(*body, conv3x3(channels, channels))
        self.tail = nn.Sequential(Upsampler(scale, channels), conv3x3(channels, 3))
        self.add_mean = MeanShift(+1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        return x + self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_mean(self.tail(self.features(x)))


def interleaved_body(n_resblocks: int, channels: int, res_scale: float, make_attention,
                     every: int = 8) -> list[nn.Module]:
    """NLSN's body layout: one attention block first, then one after every ``every`` ResBlocks.

    ``make_attention(i)`` builds the i-th attention block (i = 0, 1, ...).
    """
    blocks: list[nn.Module] = [make_attention(0)]
    n_attention = 1
    for i in range(n_resblocks):
        blocks.append(ResBlock(channels, res_scale))
        if (i + 1) % every == 0:
            blocks.append(make_attention(n_attention))
            n_attention += 1
    return blocks
