"""RNAN (Zhang et al., ICLR 2019): residual non-local attention network, the SR model.

Read from the official code (github yulunzhang/RNAN, ``SR/code/model/rnan.py`` and
``common.py``; the published SR models are ``RNAN_SR_F64G10P48BIX{2,3,4}``: 64 channels,
10 groups):

* ``sub_mean -> head conv -> [non-local group, 8 local groups, conv, non-local group]
  + head output -> EDSR upsampler (no activation) + conv -> add_mean``, RGB in [0, 255]
  (``rgb_range=255``, DIV2K mean). Note the order: the body conv comes *before* the last
  non-local group, exactly as in the official ``forward``.
* A group is one residual attention block followed by a 3x3 conv, **without** a skip around
  it (the SR code returns ``body(x)``).
* A residual attention block: ``x = RB(x)``; ``h = trunk(x) * mask(x) + x``; ``RB(RB(h))``.
  The trunk is two ResBlocks. The mask branch is ``[non-local] -> RB -> 3x3 conv stride 2
  -> RB -> RB -> 6x6 transposed conv stride 2 -> (+ first RB output) -> RB -> 1x1 conv ->
  sigmoid``. The non-local variant only adds the non-local block in front.
* ResBlocks are EDSR's (conv, ReLU, conv, + x, res_scale 1), all convs 3x3 with bias.
* Non-local block (embedded Gaussian, inner width C/2): ``x + W(softmax(theta^T phi) g)``
  with W initialised to zero, so every non-local block starts as the identity. Consequence:
  at initialisation g, theta and phi get exactly zero gradient (W blocks it); they start to
  learn after the first update of W. The official softmax is over ``dim=1`` of the
  (query x key) matrix, i.e. for each key it normalises over the *queries* (the usual
  non-local block normalises each query over the keys); kept as is, because the published
  weights were trained with it.

Readings where the official code does not decide:

* Odd sizes: the official mask branch only works on even sizes (``ceil(h/2)`` after the
  stride-2 conv, ``2 ceil(h/2)`` after the deconv), and the official test splits images into
  even-sized overlapping patches (``forward_chop``). Here the deconv output is cropped to the
  size of the skip it is added to; for even sizes this is exactly the official network, for
  odd sizes it equals zero-padding the stride-2 conv's input by one row/column at the
  bottom/right (where that conv's own padding already put zeros) and dropping the extra
  output row/column. The rest of the network never sees padding. No patching is done here.
* The official ``MeanShift`` sets ``self.requires_grad = False`` on the module, which does
  not freeze anything; we use the frozen :class:`~cclnn.models.common.MeanShift` as every
  other network here (same values, same 24 parameters, same keys).

Parameter count (all parameters, both MeanShifts' 24 included): 9,107,291 / 9,291,931 /
9,255,003 at x2 / x3 / x4, the official code's count at F64G10 (the 64->256 and 64->576
upsampler convs make the difference between scales). The official repository states no model
size, and the paper's text could not be consulted while writing this; the "about 7.5 M" that
later papers quote for RNAN is 1.61 M (18 % of ours) below what the official SR code builds,
and no counting choice reproduces it (without MeanShift: -24; without upsampler and tail, the
body alone is 8.96 M; the colour-denoising RNAN of the same repository is 8.96 M). Unexplained;
tests/test_rnan_divanet.py asserts our exact counts and records that gap.

Module names are ours; :data:`RNAN_RENAMES` maps the official checkpoint keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from .common import (RESBLOCK_RENAMES, MeanShift, NetworkConfig, ResBlock, Upsampler, conv1x1,
                     conv3x3)
from .registry import register


@dataclass(frozen=True)
class RNANConfig(NetworkConfig):
    channels: int = 64
    n_resgroups: int = 10  # two non-local groups (first and last) + n_resgroups - 2 local ones

    def check(self) -> None:
        if self.n_resgroups < 2:
            raise ConfigError(f"n_resgroups: RNAN needs at least its 2 non-local groups, "
                              f"got {self.n_resgroups}")
        if self.channels < 2:
            raise ConfigError(f"channels: expected at least 2, got {self.channels}")


KEY_CHUNK_ELEMENTS = 1 << 20  # scores held at once per image: 4 MB of float32, near the cache


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block ``x + out(A g(x))``; starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        inner = channels // 2
        self.g = conv1x1(channels, inner)
        self.theta = conv1x1(channels, inner)
        self.phi = conv1x1(channels, inner)
        self.out = conv1x1(inner, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        values = self.g(x).flatten(2)  # N x C' x HW
        queries = self.theta(x).flatten(2)  # N x C' x HW
        keys = self.phi(x).flatten(2).transpose(1, 2)  # N x HW x C'
        # The softmax runs over the queries, as in the official code (module docstring): each
        # key is normalised on its own, so the keys can be taken a chunk at a time, exactly,
        # holding chunk x HW scores instead of HW x HW. Key-major scores put the softmax on the
        # contiguous axis and give the output channel-major, with no transpose of the scores.
        chunk = max(1, KEY_CHUNK_ELEMENTS // (h * w))
        y = None
        for k in range(0, h * w, chunk):
            attention = torch.softmax(keys[:, k:k + chunk] @ queries, dim=-1)  # keys x queries
            part = values[:, :, k:k + chunk] @ attention  # N x C' x HW
            y = part if y is None else y + part
        return x + self.out(y.reshape(n, -1, h, w))

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The official program: the whole HW x HW query-by-key matrix at once, softmax over
        the queries. The reference that tests and ``cclnn bench rnan-nonlocal`` compare with."""
        n, _, h, w = x.shape
        values = self.g(x).flatten(2).transpose(1, 2)  # N x HW x C'
        queries = self.theta(x).flatten(2).transpose(1, 2)  # N x HW x C'
        attention = torch.softmax(queries @ self.phi(x).flatten(2), dim=1)  # queries x keys
        return x + self.out((attention @ values).transpose(1, 2).reshape(n, -1, h, w))


class MaskBranch(nn.Module):
    """Mixed (spatial and channel) attention mask in (0, 1) from a one-level encoder-decoder."""

    def __init__(self, channels: int, non_local: bool):
        super().__init__()
        c = channels
        self.non_local = NonLocalBlock(c) if non_local else None
        self.pre = ResBlock(c)
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.bottom = nn.Sequential(ResBlock(c), ResBlock(c))
        self.up = nn.ConvTranspose2d(c, c, 6, stride=2, padding=2)
        self.post = ResBlock(c)
        self.to_mask = conv1x1(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.non_local is not None:
            x = self.non_local(x)
        skip = self.pre(x)
        up = self.up(self.bottom(self.down(skip)))
        up = up[:, :, :skip.shape[2], :skip.shape[3]]  # odd sizes: see the module docstring
        return torch.sigmoid(self.to_mask(self.post(skip + up)))


class ResidualAttentionBlock(nn.Module):
    """``RB, RB(RB(trunk(x) * mask(x) + x))``: residual attention keeps the trunk's features."""

    def __init__(self, channels: int, non_local: bool):
        super().__init__()
        c = channels
        self.pre = ResBlock(c)
        self.trunk = nn.Sequential(ResBlock(c), ResBlock(c))
        self.mask = MaskBranch(c, non_local)
        self.post = nn.Sequential(ResBlock(c), ResBlock(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        return self.post(self.trunk(x) * self.mask(x) + x)


class AttentionGroup(nn.Module):
    """One attention block and a conv; no skip connection around it (as in the SR code)."""

    def __init__(self, channels: int, non_local: bool):
        super().__init__()
        self.block = ResidualAttentionBlock(channels, non_local)
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.block(x))


# Whole images are run in tiles of at most this many LR pixels a side (plus the tile overlap
# of context): the non-local blocks cost HW x HW, and the official test chops every image into
# patches below 30000 pixels (``forward_chop(min_size=30000)``); 128 + 2 x 16 context = 25600
# pixels. ``tile=0`` (``--tile 0``) still forces the whole image. Registered as ``max_tile``.
MAX_TILE = 128


class RNAN(nn.Module):
    def __init__(self, config: RNANConfig, scale: int):
        super().__init__()
        c = config.channels
        self.sub_mean = MeanShift(-1)
        self.head = conv3x3(3, c)
        self.nonlocal_low = AttentionGroup(c, non_local=True)
        self.groups = nn.Sequential(*[AttentionGroup(c, non_local=False)
                                      for _ in range(config.n_resgroups - 2)])
        self.body_conv = conv3x3(c, c)
        self.nonlocal_high = AttentionGroup(c, non_local=True)
        self.tail = nn.Sequential(Upsampler(scale, c), conv3x3(c, 3))
        self.add_mean = MeanShift(+1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(self.sub_mean(x))
        deep = self.nonlocal_high(self.body_conv(self.groups(self.nonlocal_low(shallow))))
        return self.add_mean(self.tail(deep + shallow))


# Official keys, e.g. ``body.3.body.0.RA_MB.0.MB_RB2.1.body.2.weight`` (group 3, its attention
# block, mask branch, second bottom ResBlock, second conv) -> ``groups.3.block.mask.bottom.1
# .conv2.weight``. Applied in order; the body conv is the only ``body.<i>.weight``.
RNAN_RENAMES = (
    (r"^head\.0\.", "head."),
    (r"^body\.\d+\.(weight|bias)$", r"body_conv.\1"),
    (r"^body\.(\d+)\.", r"groups.\1."),
    (r"^body_nl_low\.0\.", "nonlocal_low."),
    (r"^body_nl_high\.0\.", "nonlocal_high."),
    (r"\.body\.0\.RA_", ".block.RA_"),
    (r"\.body\.1\.(weight|bias)$", r".conv.\1"),
    (r"\.RA_RB1\.0\.", ".pre."),
    (r"\.RA_TB\.0\.body\.", ".trunk."),
    (r"\.RA_MB\.0\.", ".mask."),
    (r"\.RA_tail\.", ".post."),
    (r"\.MB_RB1\.0\.(g|theta|phi)\.", r".non_local.\1."),
    (r"\.MB_RB1\.0\.W\.", ".non_local.out."),
    (r"\.MB_RB1\.[01]\.body\.", ".pre.body."),
    (r"\.MB_Down\.0\.", ".down."),
    (r"\.MB_RB2\.", ".bottom."),
    (r"\.MB_Up\.0\.", ".up."),
    (r"\.MB_RB3\.0\.", ".post."),
    (r"\.MB_1x1conv\.0\.", ".to_mask."),
) + RESBLOCK_RENAMES

register("rnan", RNANConfig(), "RNAN: 10 residual (non-)local attention groups, 64 ch (Table 5)",
         RNAN_RENAMES, published="none in the official code; ~7.5 M quoted by later papers, "
         "not reproducible (network_rnan)", max_tile=MAX_TILE)(RNAN)
register("rnan-s", RNANConfig(channels=32, n_resgroups=3),
         "RNAN-S: 3 attention groups (2 non-local, 1 local), 32 ch (study size of `cclnn ablate`)",
         RNAN_RENAMES, max_tile=MAX_TILE)(RNAN)
