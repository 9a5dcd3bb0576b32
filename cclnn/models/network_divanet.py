"""DiVANet (Behjati et al., Pattern Recognition 2023): directional variance attention network.

Read from the official code (github pbehjatii/DiVANet, ``divanet.py``, ``ops.py``,
``Attention_module.py``; the published models are built as ``Net(scale=s)`` with the default
``group=4`` upsampler):

* ``sub_mean -> head conv -> 3 residual attention feature groups (RAFG) -> fusion -> sub-pixel
  upsampler -> conv -> + bicubic(input) -> add_mean``. Every conv except the two 1x1 convs of
  each DiVA attention is weight-normalised (``weight_g`` / ``weight_v``).
* Residual block: ``b = conv3x3(conv1x1(relu(conv1x1(x))))`` with widths C -> 6C -> int(0.8 C)
  -> C (a wide-activation block), returns ``x + b`` and the attention ``DiVA(b)``.
* DiVA: for each channel, the variance along each row (an H-profile) and along each column
  (a W-profile), each through its own 1x1 conv and a sigmoid, multiply ``b``. The official
  helpers are called ``stdv_*`` but return the (population) variance, not its square root;
  we do the same.
* RAFG and the network trunk fuse the same way: units run in sequence; the input and every
  unit's output are concatenated and fused by a 1x1 conv + ReLU ("feature bank"), every
  unit's attention map likewise ("attention bank"); output = feature bank + input +
  attention bank, and the attention bank is passed up. :class:`FusionStack` is that pattern,
  used for both levels.
* Upsampler: weight-normalised 3x3 conv with 4 groups to s^2 C channels, ReLU, pixel
  shuffle (twice x2 for x4). The bicubic skip is ``F.interpolate(..., "bicubic",
  align_corners=False)`` of the mean-subtracted input, as in the official code.

Value range: the official code works in [0, 1] (``ToTensor``; DIV2K mean subtracted in that
range). Here its mean shifts have ``rgb_range=1``: they divide the [0, 255] input by 255 and
multiply the output by 255, so the official weights give the official outputs, scaled.

Width and depth are hard-coded in the official code (64 channels, 3 RAFGs of 3 blocks);
here they are config fields with those defaults.

Parameter count (all parameters, as the official ``solver.py`` prints it: weight-norm
``weight_g`` and both frozen MeanShifts' 24 included): 902,388 / 949,108 / 939,764 at x2 /
x3 / x4, the paper's 902 K / 949 K / 939 K with the last digits dropped (x4 rounds to 940 K;
the paper truncates).

Module names are ours and weight norm is ``torch.nn.utils.parametrizations.weight_norm``;
:data:`DIVANET_RENAMES` maps the official checkpoint keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..config import ConfigError
from .common import MeanShift, NetworkConfig
from .registry import register


@dataclass(frozen=True)
class DiVANetConfig(NetworkConfig):
    channels: int = 64
    n_groups: int = 3  # RAFGs
    n_blocks: int = 3  # residual blocks per RAFG
    expansion: int = 6  # width of the residual block's inner 1x1 conv, in multiples of C
    squeeze: float = 0.8  # width of its 1x1 bottleneck, as a fraction of C (int(0.8 C))
    up_groups: int = 4  # groups of the upsampler convs

    def check(self) -> None:
        if self.channels % self.up_groups:
            raise ConfigError(f"channels: must be divisible by up_groups={self.up_groups}, "
                              f"got {self.channels}")
        if int(self.channels * self.squeeze) < 1:
            raise ConfigError(f"squeeze: int(channels * squeeze) must be at least 1, "
                              f"got {self.squeeze}")
        if self.n_groups < 1 or self.n_blocks < 1 or self.expansion < 1:
            raise ConfigError("n_groups, n_blocks and expansion must be at least 1")


def wn_conv(cin: int, cout: int, k: int, groups: int = 1) -> nn.Conv2d:
    """Weight-normalised conv, 'same' padding, as every conv of the official network."""
    return weight_norm(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups))


class DiVA(nn.Module):
    """Directional variance attention ``x * sigmoid(conv_h(var_W x)) * sigmoid(conv_w(var_H x))``.

    Row and column variances give each channel a cheap long-range (whole-row, whole-column)
    statistic, so the gate is both spatial and channel-wise.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv_h = nn.Conv2d(channels, channels, 1)  # plain convs, as in the official code
        self.conv_w = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        along_rows = x.var(dim=3, correction=0, keepdim=True)  # N x C x H x 1
        along_cols = x.var(dim=2, correction=0, keepdim=True)  # N x C x 1 x W
        return x * torch.sigmoid(self.conv_w(along_cols)) * torch.sigmoid(self.conv_h(along_rows))


class ResidualBlock(nn.Module):
    """Wide-activation residual block; returns ``(x + b, DiVA(b))``."""

    def __init__(self, config: DiVANetConfig):
        super().__init__()
        c = config.channels
        wide, narrow = c * config.expansion, int(c * config.squeeze)
        self.expand = wn_conv(c, wide, 1)
        self.reduce = wn_conv(wide, narrow, 1)
        self.conv = wn_conv(narrow, c, 3)
        self.diva = DiVA(c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.conv(self.reduce(F.relu(self.expand(x))))
        return x + b, self.diva(b)


class FusionStack(nn.Module):
    """Units in sequence, all outputs fused into a feature bank and all attentions into an
    attention bank; returns ``(feature bank + x + attention bank, attention bank)``.

    An RAFG is a FusionStack of residual blocks, the network trunk one of RAFGs.
    """

    def __init__(self, units: list[nn.Module], channels: int):
        super().__init__()
        n = len(units)
        self.units = nn.ModuleList(units)
        self.feature_fusion = wn_conv((n + 1) * channels, channels, 1)
        self.attention_fusion = wn_conv(n * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, attentions = [x], []
        out = x
        for unit in self.units:
            out, attention = unit(out)
            features.append(out)
            attentions.append(attention)
        feature_bank = F.relu(self.feature_fusion(torch.cat(features, dim=1)))
        attention_bank = F.relu(self.attention_fusion(torch.cat(attentions, dim=1)))
        return feature_bank + x + attention_bank, attention_bank


class DiVANet(nn.Module):
    def __init__(self, config: DiVANetConfig, scale: int):
        super().__init__()
        c = config.channels
        self.scale_factor = scale
        self.sub_mean = MeanShift(-1, rgb_range=1.0)
        self.head = wn_conv(3, c, 3)
        self.trunk = FusionStack(
            [FusionStack([ResidualBlock(config) for _ in range(config.n_blocks)], c)
             for _ in range(config.n_groups)], c)
        factors = [2] * int(math.log2(scale)) if scale in (2, 4) else [scale]
        layers: list[nn.Module] = []
        for f in factors:
            layers += [wn_conv(c, f * f * c, 3, groups=config.up_groups), nn.ReLU(inplace=True),
                       nn.PixelShuffle(f)]
        self.upsample = nn.Sequential(*layers)
        self.tail = wn_conv(c, 3, 3)
        self.add_mean = MeanShift(+1, rgb_range=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub_mean(x)  # [0, 255] -> [0, 1] minus the mean (rgb_range=1)
        features, _ = self.trunk(self.head(x))
        out = self.tail(self.upsample(features))
        h, w = x.shape[-2:]
        skip = F.interpolate(x, size=(h * self.scale_factor, w * self.scale_factor), mode="bicubic",
                             align_corners=False)
        return self.add_mean(out + skip)


# Official keys, e.g. ``b2.rb3.body.0.weight_g`` -> ``trunk.units.1.units.2.expand
# .parametrizations.weight.original0``. Applied in order (upsampler before ``.body.N.``).
DIVANET_RENAMES = (
    (r"^(sub|add)_mean\.shifter\.", r"\1_mean."),
    (r"^entry_1\.", "head."),
    (r"^exit1\.", "tail."),
    (r"^upsample\.up\.body\.", "upsample."),
    (r"^b(\d+)\.rb(\d+)\.",
     lambda m: f"trunk.units.{int(m.group(1)) - 1}.units.{int(m.group(2)) - 1}."),
    (r"^b(\d+)\.", lambda m: f"trunk.units.{int(m.group(1)) - 1}."),
    (r"^reduction_", "trunk.reduction_"),
    (r"\.reduction_1\.conv\.", ".feature_fusion."),
    (r"\.reduction_2\.conv\.", ".attention_fusion."),
    (r"\.body\.0\.", ".expand."),
    (r"\.body\.2\.", ".reduce."),
    (r"\.body\.3\.", ".conv."),
    (r"\.DiVA\.", ".diva."),
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
)

register("divanet", DiVANetConfig(), "DiVANet: 3 RAFGs x 3 DiVA residual blocks, 64 ch, "
         "weight norm (Table 5)", DIVANET_RENAMES,
         published="902 K / 949 K / 939 K (paper)")(DiVANet)
register("divanet-s", DiVANetConfig(channels=32), "DiVANet-S: DiVANet at 32 ch (study size of "
         "`cclnn ablate`)", DIVANET_RENAMES)(DiVANet)
