"""EDSR (Lim et al., CVPR-W 2017) and the sizes the paper uses: EDSR, EDSR-L, EDSR-baseline."""
from __future__ import annotations

from dataclasses import dataclass

from .common import RESBLOCK_RENAMES, EDSRStyleNet, NetworkConfig, ResBlock
from .registry import register


@dataclass(frozen=True)
class EDSRConfig(NetworkConfig):
    channels: int = 256
    n_resblocks: int = 32
    res_scale: float = 0.1
    rgb_range: float = 255.0  # value range of the weights: 255, or 1 as the official NLSN


class EDSR(EDSRStyleNet):
    def __init__(self, config: EDSRConfig, scale: int):
        body = [ResBlock(config.channels, config.res_scale) for _ in range(config.n_resblocks)]
        super().__init__(scale, config.channels, body, config.rgb_range)


for _name, _defaults, _summary in [
    ("edsr", EDSRConfig(), "EDSR: 256 ch, 32 ResBlocks (Table 5)"),
    ("edsr-l", EDSRConfig(128, 16, 0.1), "EDSR-L: 128 ch, 16 ResBlocks (Table 1 ablation)"),
    ("edsr-baseline", EDSRConfig(64, 16, 1.0), "EDSR baseline: 64 ch, 16 ResBlocks, res_scale 1"),
    ("edsr-s", EDSRConfig(32, 8, 1.0, rgb_range=1.0),
     "EDSR-S: 32 ch, 8 ResBlocks, [0, 1] (study size of `cclnn ablate`)"),
]:
    register(_name, _defaults, _summary, RESBLOCK_RENAMES)(EDSR)
