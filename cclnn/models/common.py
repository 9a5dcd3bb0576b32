"""Building blocks shared by the EDSR-style networks (EDSR, RCAN, NLSN, CCLNN).

All networks in cclnn take and return float RGB in [0, 255] (EDSR-PyTorch's ``rgb_range=255``),
so checkpoints of the official implementations load unchanged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import nn

from ..config import ConfigError, check_number

RGB_RANGE = 255.0
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)

BLOCK_COUNTS = ("n_resblocks", "n_resgroups", "n_blocks", "n_groups")  # may be 0, not negative
POSITIVE_FLOATS = ("rgb_range", "temperature")


class NetworkConfig:
    """Base of every network's config dataclass: :meth:`validate` (called by
    :func:`~cclnn.config.make_config`) applies the checks all networks share, by field name,
    then the network's own :meth:`check`. Integers are at least 1 (block counts in
    :data:`BLOCK_COUNTS` at least 0), ``*reduction`` at most ``channels``, floats finite
    (``rgb_range`` and ``temperature`` > 0), integer tuples (kernel sizes) at least 1."""

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or value is None or isinstance(value, str):
                continue
            if isinstance(value, int):
                check_number(f.name, value, 0 if f.name in BLOCK_COUNTS else 1)
            elif isinstance(value, float):
                if f.name in POSITIVE_FLOATS:
                    check_number(f.name, value, 0, low_open=True)
                else:
                    check_number(f.name, value)
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    check_number(f"{f.name}[{i}]", item, 1)
        channels = getattr(self, "channels", None)
        for f in dataclasses.fields(self):
            if f.name.endswith("reduction") and channels is not None:
                value = getattr(self, f.name)
                if value > channels:
                    raise ConfigError(f"{f.name}: must be at most channels={channels}, "
                                      f"got {value}")
        self.check()

    def check(self) -> None:
        """The network's own checks, after the shared ones."""


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class MeanShift(nn.Conv2d):
    """Subtract (sign=-1) or add (sign=+1) the DIV2K mean, as a frozen 1x1 conv.

    Kept as a convolution with frozen parameters, as in EDSR-PyTorch, so that official
    checkpoints (which store ``sub_mean.weight`` / ``sub_mean.bias``) load key for key and
    the parameter counts include its 24 numbers.

    ``rgb_range`` is the value range the weights work in (EDSR-PyTorch's ``--rgb_range``: 255
    for EDSR and RCAN, 1 for the official NLSN and DiVANet). Networks always take and return
    [0, 255]; the mean shifts convert: ``sub_mean`` divides its input by ``255 / rgb_range``,
    ``add_mean`` multiplies its output by it. A checkpoint records its range in these biases
    (``sign * rgb_range * mean``), so loading one sets ``rgb_range``: official NLSN weights,
    trained with ``--rgb_range 1``, then compute the official function instead of a wrong one.
    """

    def __init__(self, sign: int, mean=DIV2K_MEAN, rgb_range: float = RGB_RANGE):
        super().__init__(3, 3, 1)
        self.sign = sign
        self.mean = tuple(mean)
        self.rgb_range = float(rgb_range)
        with torch.no_grad():
            if self.weight.device.type != "meta":
                self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                self.bias.copy_(sign * rgb_range * torch.tensor(mean))
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = RGB_RANGE / self.rgb_range
        if factor == 1.0:
            return super().forward(x)
        if self.sign < 0:
            return super().forward(x / factor)
        return super().forward(x) * factor

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        bias = state_dict.get(prefix + "bias")
        if bias is not None and bias.device.type != "meta" and self.mean[0] != 0:
            found = abs(float(bias.reshape(-1)[0])) / self.mean[0]
            if found > 0:  # 254.99998 (float32) is 255
                self.rgb_range = float(round(found)) if abs(found - round(found)) < 1e-3 * found \
                    else found


def value_range(model: nn.Module, default: Optional[float] = RGB_RANGE) -> Optional[float]:
    """The value range a network's weights work in: its mean shifts' (``default``, 255,
    without any)."""
    for module in model.modules():
        if isinstance(module, MeanShift):
            return module.rgb_range
    return None if default is None else float(default)


class ResBlock(nn.Module):
    """EDSR residual block: ``x + res_scale * conv(relu(conv(x)))``."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        if self.res_scale != 1:  # 1 * out is out: no pass over the activations for it
            out = out.mul_(self.res_scale)
        return out.add_(x)  # in place: neither the convolution's backward needs its output


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
    -> add_mean``. Subclasses only decide what goes into ``body``. ``rgb_range``: the value
    range the network works in (see :class:`MeanShift`); its input and output stay [0, 255].
    """

    def __init__(self, scale: int, channels: int, body: list[nn.Module],
                 rgb_range: float = RGB_RANGE):
        super().__init__()
        if not rgb_range > 0:
            raise ConfigError(f"rgb_range: must be positive (255 or 1), got {rgb_range}")
        self.sub_mean = MeanShift(-1, rgb_range=rgb_range)
        self.head = nn.Sequential(conv3x3(3, channels))
        self.body = nn.Sequential(*body, conv3x3(channels, channels))
        self.tail = nn.Sequential(Upsampler(scale, channels), conv3x3(channels, 3))
        self.add_mean = MeanShift(+1, rgb_range=rgb_range)

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
