"""NLSA against a slow, obviously correct loop implementation of the official algorithm."""
import math

import pytest
import torch

from cclnn.models import NonLocalSparseAttention
from cclnn.models.nlsa import num_buckets


def loop_reference(module: NonLocalSparseAttention, x: torch.Tensor, rotations: torch.Tensor):
    """Explicit loops over images, hash rounds, chunks and queries (float64 attention)."""
    n, c, h, w = x.shape
    length = h * w
    query = module.conv_match(x).flatten(2).transpose(1, 2)  # N, L, Cq (float32)
    value = module.conv_assembly(x).flatten(2).transpose(1, 2).double()
    rounds = rotations.shape[1]
    out = torch.zeros(n, length, c, dtype=torch.float64)
    for b in range(n):
        results, lses = [], []
        for r in range(rounds):
            projected = query[b] @ rotations[:, r]
            codes = torch.cat([projected, -projected], dim=-1).argmax(dim=-1).tolist()
            order = sorted(range(length), key=lambda i: (codes[i], i))
            chunk = min(module.chunk_size, length)
            n_chunks = math.ceil(length / chunk)
            padding = n_chunks * chunk - length
            sequence = order + order[length - padding:] if padding else order
            chunks = [sequence[i * chunk:(i + 1) * chunk] for i in range(n_chunks)]
            result = torch.zeros(length, c, dtype=torch.float64)
            lse = torch.zeros(length, dtype=torch.float64)
            for i in range(n_chunks):
                key_ids = chunks[i] + chunks[(i - 1) % n_chunks] + chunks[(i + 1) % n_chunks]
                keys = query[b, key_ids].double()
                keys = keys / keys.norm(dim=-1, keepdim=True).clamp_min(5e-5)
                for j, qi in enumerate(chunks[i]):
                    if i * chunk + j >= length:  # a padding query: dropped
                        continue
                    scores = keys @ query[b, qi].double()
                    result[qi] = torch.softmax(scores, 0) @ value[b, key_ids]
                    lse[qi] = torch.logsumexp(scores, 0)
            results.append(result)
            lses.append(lse)
        weights = torch.softmax(torch.stack(lses), dim=0)
        out[b] = (torch.stack(results) * weights[..., None]).sum(0)
    attended = out.transpose(1, 2).reshape(n, c, h, w)
    return x.double() + module.res_scale * attended


@pytest.mark.parametrize("size", [(11, 13), (8, 8), (5, 7), (3, 4), (1, 1)])
def test_matches_loop_reference(size):
    module = NonLocalSparseAttention(8, n_hashes=3, chunk_size=16, reduction=2, res_scale=0.5)
    x = torch.randn(2, 8, *size)
    rotations = torch.randn(module.rotations_shape(*size))
    with torch.no_grad():
        fast = module(x, rotations=rotations)
        slow = loop_reference(module, x, rotations)
    assert fast.shape == x.shape
    assert (fast.double() - slow).abs().max().item() <= 1e-5


def test_default_chunk_and_padding():
    module = NonLocalSparseAttention(16, reduction=4)  # chunk 144, 4 hashes
    x = torch.randn(1, 16, 17, 19)  # L = 323: 3 chunks, 109 padded positions
    rotations = torch.randn(module.rotations_shape(17, 19))
    assert rotations.shape == (4, 4, 1)
    with torch.no_grad():
        diff = (module(x, rotations=rotations).double() - loop_reference(module, x, rotations))
    assert diff.abs().max().item() <= 1e-5


def test_bucket_rule():
    assert num_buckets(48 * 48, 144) == 16
    assert num_buckets(37 * 53, 144) == 14  # 13 rounded up to even
    assert num_buckets(512 * 512, 144) == 128
    assert num_buckets(100, 144) == 2  # official code would have 0 buckets and fail


def test_eval_deterministic_train_random():
    module = NonLocalSparseAttention(16, chunk_size=8, reduction=4)
    x = torch.randn(1, 16, 9, 10)
    module.eval()
    with torch.no_grad():
        a, b = module(x), module(x)
        torch.randn(5)  # the global RNG state must not matter in eval mode
        c = module(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    generator = torch.Generator().manual_seed(module.eval_seed)
    with torch.no_grad():
        expected = module(x, rotations=torch.randn(module.rotations_shape(9, 10),
                                                   generator=generator))
    assert torch.equal(a, expected)
    module.train()
    with torch.no_grad():
        outs = [module(x) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_rotation_shape_checked():
    module = NonLocalSparseAttention(8, reduction=2)
    with pytest.raises(ValueError, match="rotations must have shape"):
        module(torch.randn(1, 8, 4, 4), rotations=torch.randn(4, 4, 3))


def test_gradients_flow():
    module = NonLocalSparseAttention(8, n_hashes=2, chunk_size=16, reduction=2)
    x = torch.randn(1, 8, 7, 9, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fast_path_blocks_and_gradients(monkeypatch):
    from cclnn.models import nlsa
    module = NonLocalSparseAttention(8, n_hashes=3, chunk_size=16, reduction=2)
    x = torch.randn(2, 8, 11, 13, requires_grad=True)
    rotations = torch.randn(module.rotations_shape(11, 13))
    outputs = {}
    monkeypatch.setattr(nlsa, "ROUND_ELEMENTS", 0)  # force blocks on this small input
    for name, fast, block in (("reference", False, nlsa.BLOCK_ELEMENTS),
                              ("fast", True, nlsa.BLOCK_ELEMENTS), ("one-chunk blocks", True, 1)):
        monkeypatch.setattr(nlsa, "BLOCK_ELEMENTS", block)
        module.use_fast = fast
        x.grad = None
        module.zero_grad()
        y = module(x, rotations=rotations)
        y.backward(torch.cos(torch.arange(y.numel(), dtype=torch.float32)).view_as(y))
        outputs[name] = [y.detach(), x.grad.clone()] + [p.grad.clone() for p in module.parameters()]
    for name in ("fast", "one-chunk blocks"):
        for a, b in zip(outputs["reference"], outputs[name]):
            assert (a - b).abs().max().item() <= 1e-5, name


@pytest.mark.parametrize("integers", [False, True])
def test_hashing_equals_official_argmax(monkeypatch, integers):
    from cclnn.models import nlsa
    from cclnn.models.nlsa import bucket_order, lsh_buckets, lsh_buckets_reference
    monkeypatch.setattr(nlsa, "HASH_ELEMENTS", 84)  # slabs of 7 rows, the last one partial
    q = torch.randn(2, 300, 8)
    q[0, :5] = 0  # all-zero projections: ties everywhere, first maximum wins
    rotations = torch.randn(8, 4, 3)
    if integers:  # exact ties between positions, within and across the halves [qR, -qR]
        q, rotations = q.mul(2).round(), rotations.mul(2).round()
    codes = lsh_buckets(q, rotations)
    assert torch.equal(codes, lsh_buckets_reference(q, rotations))
    assert torch.equal(bucket_order(codes, 6), codes.argsort(dim=-1, stable=True))
    wide = torch.randint(0, 300, (2, 3, 500))  # ids that do not fit in a byte
    assert torch.equal(bucket_order(wide, 300), wide.argsort(dim=-1, stable=True))


@pytest.mark.parametrize("length, chunk", [(323, 144), (40, 144), (150, 16)])
def test_row_maximum_is_the_query_norm(length, chunk):
    """The inference path shifts each query's scores by -|q| instead of their maximum: in
    its window (padding copies and the single-chunk case included) a query's largest score
    is its own key's, |q|, and none is larger (below KEY_NORM_EPS all are within |q| of 0)."""
    from cclnn.models.nlsa import KEY_NORM_EPS, _score_table, lsh_buckets_reference
    n, match, rounds = 2, 4, 3
    query = torch.randn(n, length, match) * torch.logspace(-7, 3, length).view(1, -1, 1)
    query[0, :3] = 0
    rotations = torch.randn(match, rounds, num_buckets(length, chunk) // 2)
    # the reference program's chunks: sorted, padded by repeating the last positions
    chunk = min(chunk, length)
    n_chunks = math.ceil(length / chunk)
    order = lsh_buckets_reference(query, rotations).argsort(dim=-1, stable=True)
    order = torch.cat([order, order[..., 2 * length - n_chunks * chunk:]], dim=-1)
    table = _score_table(query.reshape(-1, match)).view(n, length, 2, match + 1)
    rows = table[torch.arange(n).view(n, 1, 1), order].view(n, rounds, n_chunks, chunk, 2, -1)
    keys = torch.cat([rows[..., 1, :].roll(shift, dims=2) for shift in (0, 1, -1)], dim=3)
    # q . k - |q| for each query and key of its window: [n, R, chunks, chunk, 3 chunk]
    shifted = rows[..., 0, :] @ keys.transpose(-1, -2)
    norms = query.norm(dim=-1)[torch.arange(n).view(n, 1), order.flatten(1)].view(
        n, rounds, n_chunks, chunk)
    assert (shifted <= 1e-6 * norms.unsqueeze(-1)).all()
    top = shifted.amax(dim=-1)
    large = norms >= KEY_NORM_EPS
    assert large.any() and (~large).any()
    assert (top[large].abs() <= 1e-6 * norms[large]).all()
    assert (top[~large].abs() <= 2 * norms[~large]).all()


@pytest.mark.parametrize("score_elements, gather_elements",
                         [(1, 1), (2 * 3 * 16 * 16, 4 * 16 * (8 + 2 * 5)), (1 << 21, 1 << 21)])
def test_inference_path_matches_reference(monkeypatch, score_elements, gather_elements):
    """Without autograd, the explicit-score path (score blocks of 1, 2 or all 9 chunks,
    gathered in super-blocks of 1, 4 or all chunks: a last super-block shorter than a
    block) gives the reference program's output, and the same as the fused training path."""
    from cclnn.models import nlsa
    monkeypatch.setattr(nlsa, "SCORE_ELEMENTS", score_elements)
    monkeypatch.setattr(nlsa, "GATHER_ELEMENTS", gather_elements)
    module = NonLocalSparseAttention(8, n_hashes=3, chunk_size=16, reduction=2)
    x = torch.randn(2, 8, 11, 13)
    x[1] *= 100  # scores far below the row maximum: exp() would give denormal numbers
    rotations = torch.randn(module.rotations_shape(11, 13))
    with torch.no_grad():
        inference = module(x, rotations=rotations)
        module.use_fast = False
        reference = module(x, rotations=rotations)
    module.use_fast = True
    trained = module(x.requires_grad_(), rotations=rotations)
    scale = x.abs().amax(dim=(1, 2, 3), keepdim=True)  # relative to each image's range
    assert ((inference - reference) / scale).abs().max().item() <= 1e-5
    assert ((inference - trained.detach()) / scale).abs().max().item() <= 1e-5
    monkeypatch.setattr(nlsa, "EXP_FLOOR", -math.inf)  # the denormal guard changes nothing
    with torch.no_grad():
        assert torch.equal(module(x.detach(), rotations=rotations), inference)


@pytest.mark.parametrize("scale", [1e-7, 1e3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_extremes_and_layouts(scale, channels_last):
    """Queries below KEY_NORM_EPS, and queries so large that unshifted exp() overflows; an
    NCHW or channels-last input (the result keeps its layout, the input is not modified)."""
    module = NonLocalSparseAttention(8, n_hashes=2, chunk_size=16, reduction=2, res_scale=0.5)
    x = torch.randn(2, 8, 9, 10) * scale
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    original = x.clone()
    rotations = torch.randn(module.rotations_shape(9, 10))
    with torch.no_grad():
        fast = module(x, rotations=rotations)
        module.use_fast = False
        reference = module(x, rotations=rotations)
    assert torch.equal(x, original)
    assert fast.is_contiguous(memory_format=torch.channels_last if channels_last
                              else torch.contiguous_format)
    assert torch.isfinite(fast).all()
    assert ((fast - reference).abs().max() / reference.abs().max()).item() <= 1e-5
