"""NLSN (Mei et al., CVPR 2021): EDSR with a Non-Local Sparse Attention block first and after
every 8 ResBlocks. ``nlsn`` is the paper's full size, ``nlsn-l`` the Table 1 ablation size."""
from __future__ import annotations

from dataclasses import dataclass

from .common import RESBLOCK_RENAMES, EDSRStyleNet, NetworkConfig, interleaved_body
from .nlsa import NLSA_RENAMES, NonLocalSparseAttention
from .registry import register


@dataclass(frozen=True)
class NLSNConfig(NetworkConfig):
    channels: int = 256
    n_resblocks: int = 32
    res_scale: float = 0.1
    n_hashes: int = 4
    chunk_size: int = 144
    reduction: int = 4  # NLSA match-embedding reduction
    rgb_range: float = 255.0  # value range of the weights: 255, or 1 as the official NLSN


class NLSN(EDSRStyleNet):
    def __init__(self, config: NLSNConfig, scale: int):
        c = config

        def attention(i: int) -> NonLocalSparseAttention:
            return NonLocalSparseAttention(c.channels, c.n_hashes, c.chunk_size, c.reduction,
                                           c.res_scale, eval_seed=i)

        super().__init__(scale, c.channels,
                         interleaved_body(c.n_resblocks, c.channels, c.res_scale, attention),
                         c.rgb_range)


for _name, _defaults, _summary in [
    ("nlsn", NLSNConfig(), "NLSN: 256 ch, 32 ResBlocks, 5 NLSA (Table 5)"),
    ("nlsn-l", NLSNConfig(128, 16), "NLSN-L: 128 ch, 16 ResBlocks, 3 NLSA (Table 1 ablation)"),
    ("nlsn-s", NLSNConfig(32, 8, 1.0, rgb_range=1.0), "NLSN-S: 32 ch, 8 ResBlocks, 2 NLSA, "
     "[0, 1] (study size of `cclnn ablate`)"),
]:
    register(_name, _defaults, _summary, RESBLOCK_RENAMES + NLSA_RENAMES)(NLSN)
