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

Implementation: :func:`reference_sparse_attention` is the official tensor program (the
oracle of the tests). The fast paths never materialise the full score tensor nor copy
each chunk three times: training uses a fused attention kernel per hash round
(:class:`_FusedLSHAttention`, exact gradients from its backward; the CPU's flash kernel, on
CUDA the memory-efficient or flash kernel, see :mod:`cclnn.models.attention_kernels`),
its rounds merged online by their log-sum-exp. Inference uses explicit score matrices an
L2-sized block of chunks at a time (:func:`_blocked_attention`), which avoids the kernel's
zero padding of the C/reduction match embedding; a query's largest score is its own, |q|,
so scores come out of the matmul already shifted by it, and as that shift is the same in
every round the rounds merge as plain sums, divided once at the end. Memory stays a few
blocks plus the output at any image size.

Random rotations: in training mode they are drawn from the global RNG (so seeding torch makes
training reproducible); in eval mode they are drawn from a private generator seeded with
``eval_seed`` on every call, so the same image always gives the same output. Networks give
their i-th NLSA ``eval_seed = i``. Both can be bypassed by passing ``rotations``.

LONG FILE: over 400 lines because the fused kernels, their blocking and the reference they are
tested against must be read together to check that they compute the same function.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .attention_kernels import AttentionKernel, kernel_for
from .common import conv1x1, conv3x3

KEY_NORM_EPS = 5e-5
MAX_BUCKETS = 128


def num_buckets(length: int, chunk_size: int) -> int:
    """Hash buckets for a sequence of ``length`` positions (official rule, at least 2)."""
    n = length // chunk_size
    return max(2, min(n + n % 2, MAX_BUCKETS))


def lsh_buckets_reference(query: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """The official code's hashing: argmax over the concatenation [qR, -qR]."""
    projected = torch.einsum("nlc,crb->nrlb", query, rotations)
    return torch.cat([projected, -projected], dim=-1).argmax(dim=-1)


# projections (rows x rounds x buckets / 2) per slab of the hashing: 1 MB, in cache
HASH_ELEMENTS = 1 << 18


def lsh_buckets(query: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Bucket id [N, rounds, L] of each position by spherical LSH: argmax over [qR, -qR],
    first maximum on ties, without materialising the concatenation.

    One matmul for all rounds per slab of rows, then only vectorised passes (torch's
    index reductions are scalar loops, several times slower): the maximum of [p, -p] is
    ``max(p)`` in the first half if ``max(p) >= -min(p)`` (the first half wins ties), else
    ``-min(p)`` in the second, and its first position j is where ``half - j`` is largest
    among the positions whose p equals that max or min.
    """
    match, rounds, half = rotations.shape
    flat = query.reshape(-1, match)
    project = rotations.reshape(match, rounds * half).T.to(flat.dtype)  # as autocast would
    codes = torch.empty(rounds, flat.shape[0], dtype=torch.long, device=query.device)
    rank = torch.arange(half, 0, -1, dtype=query.dtype, device=query.device).view(half, 1)
    step = max(1, HASH_ELEMENTS // (rounds * half))
    buffer = flat.new_empty(rounds * half * min(step, flat.shape[0]))  # reused: no page faults
    for start in range(0, flat.shape[0], step):
        rows = flat[start:start + step]
        # projections [rounds, half, rows]: the reductions over half run along the rows
        p = torch.mm(project, rows.T, out=buffer[:rounds * half * rows.shape[0]].view(
            rounds * half, -1)).view(rounds, half, -1)
        top, bottom = p.amax(dim=1, keepdim=True), p.amin(dim=1, keepdim=True)
        first_half = top >= -bottom
        hits = torch.eq(p, torch.where(first_half, top, bottom), out=p)  # 1.0 where equal
        first = hits.mul_(rank).amax(dim=1)  # half - (first position of the max or min)
        codes[:, start:start + step] = torch.where(first_half.squeeze(1), half - first,
                                                   2 * half - first)
    # rounds outermost in memory: each round's codes are contiguous for the sort
    return codes.view(rounds, *query.shape[:-1]).movedim(0, -2)


def bucket_order(codes: torch.Tensor, buckets: int) -> torch.Tensor:
    """[N, R, L] bucket ids (at most ``buckets``) -> positions sorted by bucket, ties in
    raster order. One stable 1-D sort per image and round, of the ids as bytes where they
    fit: ~10x faster in torch than one sort of the int64 ids along the last dim."""
    flat = codes.flatten(0, 1)
    if buckets < 256:
        flat = flat.to(torch.uint8)
    return torch.stack([c.argsort(stable=True) for c in flat]).view(codes.shape)


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
        order = lsh_buckets_reference(query, rotations).argsort(dim=-1, stable=True)  # [N, R, L]
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


NEIGHBOURS = (0, 1, -1)  # own chunk, previous chunk, next chunk (cyclic within a round)


def fast_path_available(value: torch.Tensor) -> bool:
    """A fused kernel exists for ``value``'s device and dtype (its head size: the channels)."""
    return kernel_for(value.device.type, value.dtype, value.shape[-1]) is not None


# A hash round is processed whole when its sorted rows x channels x images fit in
# ROUND_ELEMENTS (training patches), else in blocks of at most BLOCK_ELEMENTS (large images).
ROUND_ELEMENTS = 1 << 23
BLOCK_ELEMENTS = 1 << 21
SAVE_ELEMENTS = 1 << 26  # keep the gathered blocks for the backward when they fit


class _Blocks:
    """Chunks of one hash round, processed a block of consecutive chunks at a time.

    For a block of chunks [c0, c1), ``ext`` holds the rows of chunks c0 - 1 ... c1 (cyclic
    within the round), so the three neighbour attentions of the block are plain views of it
    (previous: ``ext[:, :-2]``, own: ``ext[:, 1:-1]``, next: ``ext[:, 2:]``); nothing is
    copied three times and no rolled copy is made.
    """

    def __init__(self, padded_order: torch.Tensor, length: int, chunk: int, channels: int):
        self.n, length_padded = padded_order.shape
        self.chunk, self.length = chunk, length
        self.n_chunks = length_padded // chunk
        self.by_chunk = padded_order.view(self.n, self.n_chunks, chunk)
        self.device = padded_order.device
        self.offsets = (torch.arange(self.n, device=self.device) * length).view(-1, 1, 1)
        per_chunk = self.n * chunk * channels
        if per_chunk * self.n_chunks <= ROUND_ELEMENTS:
            self.size = self.n_chunks
        else:
            self.size = max(1, min(self.n_chunks, BLOCK_ELEMENTS // per_chunk))

    def __iter__(self):
        """(c0, m, ext_rows, own_rows, real): the block's first chunk and chunk count, the
        flat rows of chunks c0 - 1 ... c0 + m (cyclic) and of its own chunks, and how many
        leading positions of each image's own rows are real (sorted positions >= length are
        the padding copies, whose outputs are dropped)."""
        for c0 in range(0, self.n_chunks, self.size):
            c1 = min(c0 + self.size, self.n_chunks)
            ext = torch.arange(c0 - 1, c1 + 1, device=self.device) % self.n_chunks
            ext_rows = (self.by_chunk[:, ext] + self.offsets).flatten()
            own_rows = (self.by_chunk[:, c0:c1] + self.offsets).flatten()
            real = min(self.length, c1 * self.chunk) - c0 * self.chunk
            yield c0, c1 - c0, ext_rows, own_rows, real

    def gather(self, t: torch.Tensor, rows: torch.Tensor, chunks: int,
               channels: int | None = None) -> torch.Tensor:
        """Rows of flat [n*L, c] ``t`` -> [n, chunks, chunk, channels] (batch n, 'heads' =
        chunks), zero-padded to ``channels`` (the fused kernel needs one head size for
        queries, keys and values; zero channels leave every dot product unchanged)."""
        width = channels or t.shape[-1]
        if width == t.shape[-1]:
            return t.index_select(0, rows).view(self.n, chunks, self.chunk, width)
        out = t.new_zeros(rows.numel(), width)
        out[:, :t.shape[-1]] = t.index_select(0, rows)
        return out.view(self.n, chunks, self.chunk, width)

    def gather_block(self, q_flat, k_flat, v_flat, m, ext_rows, own_rows):
        channels = v_flat.shape[-1]
        return (self.gather(q_flat, own_rows, m, channels),
                self.gather(k_flat, ext_rows, m + 2, channels),
                self.gather(v_flat, ext_rows, m + 2))


def _windows(ext: torch.Tensor) -> torch.Tensor:
    """[n, m + 2, chunk, C] -> overlapping view [n, m, 3 chunk, C]: window i holds chunks
    i - 1, i, i + 1 of the block, the keys of chunk i (a view: nothing is copied)."""
    n, m2, chunk, channels = ext.shape
    return ext.as_strided((n, m2 - 2, 3 * chunk, channels),
                          (ext.stride(0), chunk * channels, channels, 1))


class _FusedLSHAttention(torch.autograd.Function):
    """All hash rounds of LSH attention with a fused attention kernel.

    Forward: in the sorted order of a round, the keys of chunk i are chunks i - 1, i, i + 1,
    which are consecutive rows: an overlapping strided view of the sorted keys gives every
    chunk its 3-chunk key window without copying anything, and one kernel call per round
    (or block of chunks) returns the attention output o_r and its log-sum-exp l_r with no
    score tensor materialised. Rounds are merged online in raster order with weights
    ``softmax_r(l_r)`` (in float32 whatever the kernel's dtype), one block of chunks at a
    time for large images, so the working set is a few block-sized tensors plus the output,
    whatever the image size.

    Backward: the loss sees a round only through the merged output ``out``, so the score
    gradient of round r is ``w_r p_j (g . v_j - g . out)`` with ``w_r = exp(l_r - LSE)``:
    exactly what the kernel's backward computes when given ``grad_out = w_r g`` and ``out``
    in place of o_r.
    """

    @staticmethod
    def forward(ctx, query, keys, value, padded_order, chunk: int, kernel: AttentionKernel):
        n, length, channels = value.shape
        q_flat, k_flat = query.reshape(n * length, -1), keys.reshape(n * length, -1)
        v_flat = value.reshape(n * length, channels)
        out = torch.empty(n * length, channels, dtype=torch.float32, device=value.device)
        lse = torch.empty(n * length, dtype=torch.float32, device=value.device)
        states, kept = [], []
        keep = (any(ctx.needs_input_grad[:3])
                and 3 * padded_order.numel() * channels <= SAVE_ELEMENTS)
        with torch.autocast(value.device.type, enabled=False):  # the dtypes are chosen here
            for r in range(padded_order.shape[1]):
                blocks = _Blocks(padded_order[:, r], length, chunk, channels)
                for _, m, ext_rows, own_rows, real in blocks:
                    q, k, v = blocks.gather_block(q_flat, k_flat, v_flat, m, ext_rows, own_rows)
                    if keep:
                        kept += [q, k, v]
                    result = kernel.forward(q, _windows(k), _windows(v))
                    states.append((result.lse, result.state))
                    _merge_block(out, lse, r == 0, own_rows, real, result.out.float(),
                                 result.lse)
        ctx.save_for_backward(query, keys, value, padded_order, out, lse, *kept)
        ctx.chunk, ctx.kernel, ctx.states, ctx.kept = chunk, kernel, states, bool(kept)
        return out.view(n, length, channels).to(value.dtype)

    @staticmethod
    def backward(ctx, grad):
        query, keys, value, padded_order, out, lse, *kept = ctx.saved_tensors
        with torch.autocast(value.device.type, enabled=False):
            grads = _fused_backward(ctx, grad, query, keys, value, padded_order, out, lse,
                                    iter(kept))
        ctx.states = None
        return (*grads, None, None, None)


def _fused_backward(ctx, grad, query, keys, value, padded_order, out, lse, kept):
    """(d_query, d_keys, d_value) of :class:`_FusedLSHAttention`, round by round."""
    n, length, channels = value.shape
    match, chunk, dtype, device = query.shape[-1], ctx.chunk, value.dtype, value.device
    length_padded = padded_order.shape[2]
    q_flat, k_flat = query.reshape(n * length, -1), keys.reshape(n * length, -1)
    v_flat = value.reshape(n * length, channels)
    g_flat = grad.reshape(n * length, channels)
    totals = [torch.zeros(n, length, c, dtype=torch.float32, device=device)
              for c in (match, match, channels)]
    undo = padded_order[..., :length].argsort(dim=-1)  # raster -> sorted position
    states = iter(ctx.states)
    for r in range(padded_order.shape[1]):
        blocks = _Blocks(padded_order[:, r], length, chunk, channels)
        # gradients of this round in its sorted, padded order: [n, chunks, chunk, C]
        sorted_grads = [torch.zeros(n, blocks.n_chunks, chunk, c, dtype=torch.float32,
                                    device=device) for c in (match, match, channels)]
        for c0, m, ext_rows, own_rows, real in blocks:
            if ctx.kept:
                q, k, v = next(kept), next(kept), next(kept)
            else:
                q, k, v = blocks.gather_block(q_flat, k_flat, v_flat, m, ext_rows, own_rows)
            l_r, state = next(states)
            g = blocks.gather(g_flat, own_rows, m).float()
            g.view(n, -1, channels)[:, real:] = 0  # padding copies: outputs were dropped
            weight = torch.exp(l_r.reshape(n, m, -1) - lse.index_select(0, own_rows).view(
                n, m, -1)).unsqueeze(-1)
            o = blocks.gather(out, own_rows, m).to(dtype)
            dq, dk, dv = ctx.kernel.backward(g.mul_(weight).to(dtype), q, _windows(k),
                                             _windows(v), o, state)
            sorted_grads[0][:, c0:c0 + m] += dq[..., :match]
            ext = torch.arange(c0 - 1, c0 + m + 1, device=device) % blocks.n_chunks
            for total, part in ((sorted_grads[1], dk[..., :match]), (sorted_grads[2], dv)):
                part = part.float()
                for i in range(3):  # slice i of window j belongs to chunk ext[j + i]
                    total.index_add_(1, ext[i:i + m], part[:, :, i * chunk:(i + 1) * chunk])
        # the padding rows are copies of the last sorted positions: fold them back, then
        # undo the sort with one gather (a permutation) instead of a scatter-add
        rows = (undo[:, r] + torch.arange(n, device=device).view(n, 1) * length_padded).flatten()
        for total, sorted_grad in zip(totals, sorted_grads):
            flat = sorted_grad.view(n, length_padded, -1)
            if length_padded > length:
                flat[:, 2 * length - length_padded:length] += flat[:, length:]
            total += flat.reshape(n * length_padded, -1).index_select(0, rows).view_as(total)
    return tuple(t.to(dtype) for t in totals)


def _merge_block(out, lse, first: bool, own_rows, real: int, out_b, lse_b) -> None:
    """Fold one block's attention result (sorted order, [n, ..., C]) into the running
    raster-order ``out``/``lse`` of the rounds seen so far (padding copies dropped)."""
    n, channels = out_b.shape[0], out.shape[-1]
    rows = own_rows.view(n, -1)[:, :real].reshape(-1)
    out_b = out_b.reshape(n, -1, channels)[:, :real].reshape(-1, channels)
    lse_b = lse_b.reshape(n, -1)[:, :real].reshape(-1)
    if first:
        out.index_copy_(0, rows, out_b)
        lse.index_copy_(0, rows, lse_b)
    else:
        merged, merged_lse = _merge(out.index_select(0, rows), lse.index_select(0, rows),
                                    out_b, lse_b)
        out.index_copy_(0, rows, merged)
        lse.index_copy_(0, rows, merged_lse)


# Inference: chunks per score block (its scores [m, chunk, 3 chunk] at most SCORE_ELEMENTS
# floats, in L2 cache, or one chunk), cut from super-blocks of consecutive chunks whose rows
# (about GATHER_ELEMENTS floats of queries, keys and values) are gathered at once
SCORE_ELEMENTS = 1 << 17
GATHER_ELEMENTS = 1 << 21
# exp(s - |q|) below exp(-80) ~ 2e-35 is clamped there: it changes no float32 result (the
# largest term, the own key's, is 1), and keeps denormal numbers, which make the value matmul
# several times slower on x86, out of the weights (unnormalised queries of bright images,
# |q| in the hundreds, make such scores)
EXP_FLOOR = -80.0


def _score_table(query: torch.Tensor) -> torch.Tensor:
    """[rows, Cq] queries -> [rows, 2 (Cq + 1)] table ``[q, -|q|, k, 1]`` (k = the
    normalised key): the dot product of a query part and a key part is ``q . k - |q|``.

    ``|q|`` is the maximum of each query's scores: its own key is in its own chunk (padding
    rows are copies, so theirs too) and scores ``q . k = |q|``, and no score exceeds it
    (``|k| <= 1``); below ``KEY_NORM_EPS`` all scores are within ``|q|`` of 0. So the
    shifted scores need no row maximum, and the shift is the same in every hash round.
    """
    rows, match = query.shape
    norm = torch.linalg.vector_norm(query, dim=-1, keepdim=True)
    table = query.new_empty(rows, 2, match + 1)
    torch.cat([query, norm.neg()], dim=1, out=table[:, 0])
    torch.div(query, norm.clamp_min(KEY_NORM_EPS), out=table[:, 1, :match])  # F.normalize
    table[:, 1, match] = 1
    return table.view(rows, 2 * (match + 1))


def _window_view(rows: torch.Tensor, count: int, chunk: int) -> torch.Tensor:
    """Rows of chunks -1 ... count [(count + 2) chunk, c] (any row stride) -> view
    [count, 3 chunk, c]: window i holds chunks i - 1, i, i + 1 (nothing is copied)."""
    return rows.as_strided((count, 3 * chunk, rows.shape[1]),
                           (chunk * rows.stride(0), rows.stride(0), rows.stride(1)))


def _blocked_attention(query, value, padded_order, chunk: int) -> torch.Tensor:
    """Inference-only LSH attention with explicit score matrices, a block of chunks at a time.

    Without autograd there is nothing to save, so each block's scores [m, chunk, 3 chunk]
    (half a MB at chunk 144: in L2 cache) come from one batched matmul of the
    C/reduction-channel queries and keys, already shifted by ``-|q|`` (see
    :func:`_score_table`), and are exponentiated in place and multiplied by the values
    (unlike the fused kernel, no zero padding of the match embedding to C channels). The
    rows of a super-block of consecutive chunks are gathered at once, its score blocks are
    views of them. The shift is the same in every round, so the rounds'
    ``softmax_r(lse_r)``-weighted merge is ``sum_r U_r / sum_r S_r`` with U_r, S_r the
    round's unnormalised outputs and weight sums: both are summed into raster order with
    one ``index_add_`` per super-block and divided once at the end. Same windows and
    padding rule as :class:`_FusedLSHAttention`; float32 whatever the input's dtype (also
    under autocast: the matmuls write into float32 buffers).
    """
    n, length, channels = value.shape
    rounds, n_chunks = padded_order.shape[1], padded_order.shape[2] // chunk
    table = _score_table(query.reshape(n * length, -1).float())
    width = table.shape[1] // 2  # [q, -|q|] | [k, 1]
    v_flat = value.reshape(n * length, channels).float()
    out = torch.zeros(n * length, channels, dtype=torch.float32, device=value.device)
    total = torch.zeros(n * length, dtype=torch.float32, device=value.device)
    m = max(1, min(n_chunks, SCORE_ELEMENTS // (3 * chunk * chunk)))
    size = min(n_chunks, m * max(1, GATHER_ELEMENTS // (m * chunk * (channels + 2 * width))))
    scores = torch.empty(m, chunk, 3 * chunk, device=value.device)
    u = torch.empty(size * chunk, channels, device=value.device)  # super-block, sorted order
    s = torch.empty(size * chunk, device=value.device)
    qk_rows = table.new_empty((size + 2) * chunk, table.shape[1])  # reused: no page faults
    v_rows = v_flat.new_empty((size + 2) * chunk, channels)
    for b in range(n):
        for r in range(rounds):
            order = padded_order[b, r] + b * length
            # sorted rows with the last chunk before and the first after (cyclic
            # neighbours): chunks c - 1 ... c + 1 are rows (c ... c + 3) * chunk of it
            ext_order = torch.cat([order[-chunk:], order, order[:chunk]])
            for s0 in range(0, n_chunks, size):
                s1 = min(s0 + size, n_chunks)
                rows = ext_order[s0 * chunk:(s1 + 2) * chunk]
                qk = torch.index_select(table, 0, rows, out=qk_rows[:rows.numel()])
                v = torch.index_select(v_flat, 0, rows, out=v_rows[:rows.numel()])
                count = s1 - s0  # chunks
                blocks = zip(  # score blocks of m chunks: views of the super-block's rows
                    qk[chunk:(count + 1) * chunk, :width].view(count, chunk, width).split(m),
                    _window_view(qk[:, width:], count, chunk).transpose(1, 2).split(m),
                    _window_view(v, count, chunk).split(m),
                    u[:count * chunk].view(count, chunk, channels).split(m),
                    s[:count * chunk].view(count, chunk).split(m))
                for q_b, k_b, v_b, u_b, s_b in blocks:
                    w = torch.bmm(q_b, k_b, out=scores[:q_b.shape[0]])
                    torch.sum(w.clamp_(min=EXP_FLOOR).exp_(), dim=-1, out=s_b)
                    torch.bmm(w, v_b, out=u_b)
                real = min(length, s1 * chunk) - s0 * chunk  # sorted rows >= length: padding
                own = rows[chunk:chunk + real]
                out.index_add_(0, own, u[:real])
                total.index_add_(0, own, s[:real])
    return out.div_(total.unsqueeze(-1)).view(n, length, channels).to(value.dtype)


def _merge(out_a, lse_a, out_b, lse_b):
    """Two attention results over disjoint key sets -> the result over their union."""
    lse = torch.logaddexp(lse_a, lse_b)
    merged = out_a * torch.exp(lse_a - lse).unsqueeze(-1)
    merged.addcmul_(out_b, torch.exp(lse_b - lse).unsqueeze(-1))
    return merged, lse


def fast_sparse_attention(query: torch.Tensor, value: torch.Tensor, rotations: torch.Tensor,
                          chunk_size: int, kernel: AttentionKernel | None = None) -> torch.Tensor:
    """Same result as :func:`reference_sparse_attention`, without the score tensor and
    without copying each chunk three times; see :class:`_FusedLSHAttention`. ``kernel``:
    the fused kernel of training (default: the one for ``value``'s device and dtype)."""
    n, length, match = query.shape
    channels = value.shape[-1]
    kernel = kernel or kernel_for(value.device.type, value.dtype, channels)
    if match > channels or kernel is None:  # (NLSA's match = channels / reduction)
        return reference_sparse_attention(query, value, rotations, chunk_size)
    chunk = min(chunk_size, length)
    padding = -(-length // chunk) * chunk - length
    with torch.no_grad():
        order = bucket_order(lsh_buckets(query, rotations), 2 * rotations.shape[-1])
        padded_order = torch.cat([order, order[..., length - padding:]], -1) if padding else order
    if not (torch.is_grad_enabled() and (query.requires_grad or value.requires_grad)):
        return _blocked_attention(query.to(value.dtype).contiguous(), value.contiguous(),
                                  padded_order.contiguous(), chunk)
    keys = F.normalize(query, p=2, dim=-1, eps=KEY_NORM_EPS).to(value.dtype)
    query = query.to(value.dtype)  # autocast may leave the normalised keys in float32
    return _FusedLSHAttention.apply(query.contiguous(), keys.contiguous(), value.contiguous(),
                                    padded_order.contiguous(), chunk, kernel)


def sparse_attention(query: torch.Tensor, value: torch.Tensor, rotations: torch.Tensor,
                     chunk_size: int, fast: bool = True) -> torch.Tensor:
    """Fused path where a kernel exists (CPU float32, CUDA), the reference program elsewhere."""
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
        # channels-last convolutions give position-major [N, L, C] outputs without copies
        x_cl = x.contiguous(memory_format=torch.channels_last)
        query = self.conv_match(x_cl).flatten(2).transpose(1, 2).contiguous()
        value = self.conv_assembly(x_cl).flatten(2).transpose(1, 2).contiguous()
        del x_cl
        attended = sparse_attention(query, value, rotations.to(x.dtype), self.chunk_size,
                                    fast=self.use_fast)
        del query, value
        return self._residual(x, attended)

    def _residual(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """``x + res_scale * attended`` ([N, L, C], position-major) in the layout of x.

        Without autograd, ``attended`` (a new tensor of ours) is reused: the sum is made in
        it for a channels-last x, and for an NCHW x it is first transposed to [C, L] per
        image by torch's blocked 2-D transpose (torch.add across the two layouts strides
        through memory, ~3x slower at 64 x 532 x 532)."""
        n, c, h, w = x.shape
        if attended.requires_grad or attended.dtype != x.dtype:
            return torch.add(x, attended.view(n, h, w, c).permute(0, 3, 1, 2),
                             alpha=self.res_scale)
        if x.is_contiguous(memory_format=torch.channels_last):
            out = attended.view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            out = torch.empty(n, c, h, w, dtype=x.dtype, device=x.device)
            for image, rows in zip(out, attended):
                image.view(c, h * w).copy_(rows.T)
        return torch.add(x, out, alpha=self.res_scale, out=out)


# Official checkpoints wrap both convs in a one-layer Sequential (``conv_match.0.weight``).
NLSA_RENAMES = ((r"\.conv_match\.0\.(weight|bias)$", r".conv_match.\1"),
                (r"\.conv_assembly\.0\.(weight|bias)$", r".conv_assembly.\1"))
