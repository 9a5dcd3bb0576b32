"""Non-Local Sparse Attention (NLSA, Mei et al., CVPR 2021), numerically the official algorithm.

Algorithm (per image, per hash round r of ``n_hashes``):

1. ``q = conv_match(x)`` (3x3, C -> C/reduction) is the match embedding of each of the
   L = H*W positions, ``v = conv_assembly(x)`` (1x1, C -> C) the values.
2. Spherical LSH: with a random rotation ``R_r`` (C/reduction x buckets/2), the bucket of a
   position is ``argmax([q R_r, -q R_r])``; buckets = min(L // chunk_size rounded up to even,
   128), and at least 2 (the official code has 0 buckets, and fails, for L < chunk_size).
3. Positions are sorted by bucket (a stable sort: ties keep raster order; the official code
   uses an unstable sort, so its tie order is arbitrary), the sorted sequence is padded to a
   multiple of ``chunk_size`` by repeating its last elements (exactly as the official code
   does, so those keys count twice), and cut into chunks. For L < chunk_size there is a
   single chunk of all L positions (dense attention).
4. Each query attends to the keys of its own chunk and the two neighbouring chunks (cyclic
   within the round), keys L2-normalised (eps 5e-5), queries not, softmax over the 3 chunks.
5. The rounds are merged with weights ``softmax_r(logsumexp of round r's scores)``, and the
   module returns ``x + res_scale * attention``.

Random rotations: in training mode they are drawn from the global RNG (so seeding torch makes
training reproducible); in eval mode they are drawn from a private generator seeded with
``eval_seed`` on every call, so the same image always gives the same output. Networks give
their i-th NLSA ``eval_seed = i``. Both can be bypassed by passing ``rotations``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import conv1x1, conv3x3

KEY_NORM_EPS = 5e-5
MAX_BUCKETS = 128


def num_buckets(length: int, chunk_size: int) -> int:
    """Hash buckets for a sequence of ``length`` positions (official rule, at least 2)."""
    n = length // chunk_size
    return max(2, min(n + n % 2, MAX_BUCKETS))


def lsh_buckets(query: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Bucket id [N, rounds, L] of each position by spherical LSH (argmax over [qR, -qR])."""
    projected = torch.einsum("nlc,crb->nrlb", query, rotations)
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1)


def sparse_attention(query: torch.Tensor, value: torch.Tensor, rotations: torch.Tensor,
                     chunk_size: int) -> torch.Tensor:
    """LSH chunked attention; ``query`` [N, L, Cq], ``value`` [N, L, C] -> [N, L, C].

    ``rotations`` is [Cq, rounds, buckets // 2]. See the module docstring for the algorithm.
    """
    n, length, _ = query.shape
    channels = value.shape[-1]
    rounds = rotations.shape[1]
    chunk = min(chunk_size, length)
    n_chunks = -(-length // chunk)
    padding = n_chunks * chunk - length

    with torch.no_grad():
        order = lsh_buckets(query, rotations).argsort(dim=-1, stable=True)  # [N, R, L]
        padded_order = torch.cat([order, order[..., length - padding:]], -1) if padding else order
        undo = order.argsort(dim=-1)
    batch = torch.arange(n, device=query.device).view(n, 1, 1)
    keys = F.normalize(query, p=2, dim=-1, eps=KEY_NORM_EPS)

    def chunked(t: torch.Tensor) -> torch.Tensor:  # [N, L, c] -> [N, R, chunks, chunk, c]
        return t[batch, padded_order].view(n, rounds, n_chunks, chunk, t.shape[-1])

    def with_neighbours(t: torch.Tensor) -> torch.Tensor:  # own, previous, next chunk
        return torch.cat([t, t.roll(1, dims=2), t.roll(-1, dims=2)], dim=3)

    q = chunked(query)
    k = with_neighbours(chunked(keys))
    v = with_neighbours(chunked(value))
    scores = q @ k.transpose(-1, -2)  # [N, R, chunks, chunk, 3 chunk]
    lse = scores.logsumexp(dim=-1, keepdim=True)
    out = torch.exp(scores - lse) @ v  # [N, R, chunks, chunk, C]
    out = out.reshape(n, rounds, -1, channels)[:, :, :length]
    lse = lse.reshape(n, rounds, -1)[:, :, :length]
    out = out.gather(2, undo.unsqueeze(-1).expand(-1, -1, -1, channels))
    lse = lse.gather(2, undo)
    weights = torch.softmax(lse, dim=1).unsqueeze(-1)
    return (out * weights).sum(dim=1)


class NonLocalSparseAttention(nn.Module):
    """NLSA block with its residual: ``x + res_scale * A(x)``. Input/Output N x C x H x W."""

    def __init__(self, channels: int, n_hashes: int = 4, chunk_size: int = 144,
                 reduction: int = 4, res_scale: float = 1.0, eval_seed: int = 0):
        super().__init__()
        if channels % reduction:
            raise ValueError(f"channels ({channels}) must be divisible by reduction ({reduction})")
        self.channels = channels
        self.n_hashes = n_hashes
        self.chunk_size = chunk_size
        self.reduction = reduction
        self.res_scale = res_scale
        self.eval_seed = eval_seed
        self.conv_match = conv3x3(channels, channels // reduction)
        self.conv_assembly = conv1x1(channels, channels)

    def rotations_shape(self, height: int, width: int) -> tuple[int, int, int]:
        buckets = num_buckets(height * width, self.chunk_size)
        return (self.channels // self.reduction, self.n_hashes, buckets // 2)

    def draw_rotations(self, height: int, width: int, device, dtype) -> torch.Tensor:
        shape = self.rotations_shape(height, width)
        if self.training:
            return torch.randn(shape, device=device, dtype=dtype)
        generator = torch.Generator().manual_seed(self.eval_seed)
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, rotations: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        if rotations is None:
            rotations = self.draw_rotations(h, w, x.device, x.dtype)
        elif tuple(rotations.shape) != self.rotations_shape(h, w):
            raise ValueError(f"rotations must have shape {self.rotations_shape(h, w)} for a "
                             f"{h}x{w} input, got {tuple(rotations.shape)}")
        query = self.conv_match(x).flatten(2).transpose(1, 2)
        value = self.conv_assembly(x).flatten(2).transpose(1, 2)
        attended = sparse_attention(query, value, rotations.to(x.dtype), self.chunk_size)
        return x + self.res_scale * attended.transpose(1, 2).reshape(n, c, h, w)


# Official checkpoints wrap both convs in a one-layer Sequential (``conv_match.0.weight``).
NLSA_RENAMES = ((r"\.conv_match\.0\.(weight|bias)$", r".conv_match.\1"),
                (r"\.conv_assembly\.0\.(weight|bias)$", r".conv_assembly.\1"))
