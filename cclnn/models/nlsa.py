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

import math

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


def reference_sparse_attention(query: torch.Tensor, value: torch.Tensor,
                               rotations: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """LSH chunked attention; ``query`` [N, L, Cq], ``value`` [N, L, C] -> [N, L, C].

    The official code's tensor program: gather into sorted order, concatenate each chunk
    with its two neighbours, materialise the full score tensor, log-sum-exp. Kept as the
    oracle of :func:`fast_sparse_attention` and as the fallback where that is unavailable.
    ``rotations`` is [Cq, rounds, buckets // 2].
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


_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward",
                          None)
NEIGHBOURS = (0, 1, -1)  # own chunk, previous chunk, next chunk (cyclic within a round)


def fast_path_available(x: torch.Tensor) -> bool:
    return (_FLASH is not None and _FLASH_BACKWARD is not None and x.device.type == "cpu"
            and x.dtype == torch.float32)


def _rows(order: torch.Tensor, length: int) -> torch.Tensor:
    """Per-image row indices [N, M] -> indices into the flattened [N * length] rows."""
    offsets = torch.arange(order.shape[0], device=order.device).view(-1, 1) * length
    return (order + offsets).flatten()


def _neighbour(t: torch.Tensor, n: int, shift: int) -> torch.Tensor:
    """Chunk i of the result is chunk i - shift of ``t`` ([N * chunks, 1, chunk, C], cyclic
    within each image); a rolled copy, none for shift 0."""
    if shift == 0:
        return t
    return t.view(n, -1, *t.shape[1:]).roll(shift, 1).view(t.shape)


def _add_unrolled(total: torch.Tensor, part: torch.Tensor, n: int, shift: int) -> None:
    """``total += part`` with the neighbour shift undone: ``part``'s chunk i belongs to the
    original chunk i - shift (in place, no rolled copy)."""
    t = total.view(n, -1, *total.shape[1:])
    p = part.view(n, -1, *part.shape[1:])
    if shift == 1:
        t[:, :-1] += p[:, 1:]
        t[:, -1] += p[:, 0]
    else:
        t[:, 1:] += p[:, :-1]
        t[:, 0] += p[:, -1]


class _FusedLSHAttention(torch.autograd.Function):
    """Merged output of all (round, neighbour chunk) attention parts, with fused attention.

    Forward: for each hash round, one fused attention per neighbour chunk (no score tensor is
    materialised: the CPU flash-attention kernel returns each part's output o_a and
    log-sum-exp l_a). Softmax over a chunk and its two neighbours is the l-weighted merge of
    the three parts, and the rounds are merged by the same rule, so the result is
    ``out = sum_a exp(l_a - LSE) o_a`` with ``LSE = logsumexp_a l_a`` over all 3 x rounds
    parts: the official algorithm, without its [rounds, chunks, 144, 432] score tensor and
    without copying every chunk three times.

    Backward: the loss sees the parts only through ``out``, so for part a the score gradient
    is ``w_a p^a_j (g . v_j - g . out)`` with ``w_a = exp(l_a - LSE)``: exactly what the
    flash backward kernel computes when given ``grad_out = w_a g`` and ``out`` in place of
    o_a. Each round is processed on its own, so memory stays at a few copies of the input
    whatever the image size (the sorted chunks are kept for the backward only when a
    gradient is needed).
    """

    @staticmethod
    def forward(ctx, query, keys, value, padded_order, undo, chunk: int):
        n, length, channels = value.shape
        rounds, length_padded = padded_order.shape[1], padded_order.shape[2]
        flat = (n * (length_padded // chunk), 1, chunk, channels)
        keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        out = lse = None
        saved = []
        for r in range(rounds):
            rows = _rows(padded_order[:, r], length)
            qc, kc, vc = (t.reshape(-1, channels).index_select(0, rows).view(flat)
                          for t in (query, keys, value))
            outs, lses = [], []
            for shift in NEIGHBOURS:
                o_a, l_a = _FLASH(qc, _neighbour(kc, n, shift), _neighbour(vc, n, shift),
                                  0.0, False, scale=1.0)
                outs.append(o_a)
                lses.append(l_a)
            lse_r = torch.logsumexp(torch.stack(lses), dim=0)
            out_r = outs[0].mul_(torch.exp(lses[0] - lse_r).unsqueeze(-1))
            for o_a, l_a in zip(outs[1:], lses[1:]):
                out_r.addcmul_(o_a, torch.exp(l_a - lse_r).unsqueeze(-1))
            # back to raster order (padding rows dropped), then merged with earlier rounds
            back = _rows(undo[:, r], length_padded)
            out_r = out_r.view(-1, channels).index_select(0, back).view(n, length, channels)
            lse_r = lse_r.reshape(-1).index_select(0, back).view(n, length)
            if out is None:
                out, lse = out_r, lse_r
            else:
                new_lse = torch.logaddexp(lse, lse_r)
                out.mul_(torch.exp(lse - new_lse).unsqueeze(-1))
                out.addcmul_(out_r, torch.exp(lse_r - new_lse).unsqueeze(-1))
                lse = new_lse
            if keep:
                saved += [qc, kc, vc, *lses]
        ctx.save_for_backward(padded_order, out, lse, *saved)
        ctx.shape = (n, length, channels, chunk, query.shape[-1])
        return out

    @staticmethod
    def backward(ctx, grad):
        padded_order, out, lse, *saved = ctx.saved_tensors
        n, length, channels, chunk, _ = ctx.shape
        rounds, length_padded = padded_order.shape[1], padded_order.shape[2]
        flat = (n * (length_padded // chunk), 1, chunk, channels)
        grads = [torch.zeros(n * length, channels, dtype=grad.dtype) for _ in range(3)]
        per_round = 3 + len(NEIGHBOURS)
        for r in range(rounds):
            qc, kc, vc, *lses = saved[r * per_round:(r + 1) * per_round]
            rows = _rows(padded_order[:, r], length)
            g_sorted = grad.reshape(-1, channels).index_select(0, rows).view(n, -1, channels)
            g_sorted[:, length:] = 0  # padding rows were dropped from the output
            g_sorted = g_sorted.view(flat)
            out_sorted = out.reshape(-1, channels).index_select(0, rows).view(flat)
            lse_sorted = lse.reshape(-1).index_select(0, rows).view(flat[:3])
            dq = dk = dv = None
            for shift, lse_a in zip(NEIGHBOURS, lses):
                weight = torch.exp(lse_a - lse_sorted).unsqueeze(-1)
                dq_a, dk_a, dv_a = _FLASH_BACKWARD(
                    g_sorted * weight, qc, _neighbour(kc, n, shift), _neighbour(vc, n, shift),
                    out_sorted, lse_a, 0.0, False, scale=1.0)
                if dq is None:
                    dq, dk, dv = dq_a, dk_a, dv_a
                else:
                    dq.add_(dq_a)
                    _add_unrolled(dk, dk_a, n, shift)
                    _add_unrolled(dv, dv_a, n, shift)
            for total, part in zip(grads, (dq, dk, dv)):
                total.index_add_(0, rows, part.reshape(-1, channels))
        return (*(g.view(n, length, channels) for g in grads), None, None, None)


def fast_sparse_attention(query: torch.Tensor, value: torch.Tensor, rotations: torch.Tensor,
                          chunk_size: int) -> torch.Tensor:
    """Same result as :func:`reference_sparse_attention` (CPU, float32), without the score
    tensor and without copying each chunk three times; see :class:`_FusedLSHAttention`."""
    n, length, match_channels = query.shape
    channels = value.shape[-1]
    chunk = min(chunk_size, length)
    n_chunks = -(-length // chunk)
    padding = n_chunks * chunk - length
    with torch.no_grad():
        order = lsh_buckets(query, rotations).argsort(dim=-1, stable=True)  # [N, R, L]
        padded_order = torch.cat([order, order[..., length - padding:]], -1) if padding else order
        undo = order.argsort(dim=-1)
    keys = F.normalize(query, p=2, dim=-1, eps=KEY_NORM_EPS)
    # the fused kernel needs one head size for queries, keys and values: zero-pad the match
    # embedding to C channels (dot products are unchanged)
    if match_channels < channels:
        query = F.pad(query, (0, channels - match_channels))
        keys = F.pad(keys, (0, channels - match_channels))
    elif match_channels > channels:
        value = F.pad(value, (0, match_channels - channels))
    out = _FusedLSHAttention.apply(query.contiguous(), keys.contiguous(), value.contiguous(),
                                   padded_order.contiguous(), undo.contiguous(), chunk)
    return out[..., :channels]


def sparse_attention(query: torch.Tensor, value: torch.Tensor, rotations: torch.Tensor,
                     chunk_size: int, fast: bool = True) -> torch.Tensor:
    """Fused path where available (CPU float32), the reference tensor program elsewhere."""
    if fast and fast_path_available(value):
        return fast_sparse_attention(query, value, rotations, chunk_size)
    return reference_sparse_attention(query, value, rotations, chunk_size)


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
        self.use_fast = True  # False forces the reference tensor program (benchmarks, tests)
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
        attended = sparse_attention(query, value, rotations.to(x.dtype), self.chunk_size,
                                    fast=self.use_fast)
        return x + self.res_scale * attended.transpose(1, 2).reshape(n, c, h, w)


# Official checkpoints wrap both convs in a one-layer Sequential (``conv_match.0.weight``).
NLSA_RENAMES = ((r"\.conv_match\.0\.(weight|bias)$", r".conv_match.\1"),
                (r"\.conv_assembly\.0\.(weight|bias)$", r".conv_assembly.\1"))
