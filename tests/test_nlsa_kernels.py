"""NLSA's fused path is device-independent up to the attention kernel: these tests pin the
kernel contract to PyTorch's CPU flash kernel, run the whole fused algorithm through a
plain-torch kernel that keeps that contract (what the CUDA kernels do on a GPU), check which
kernel each device and dtype gets, and, marked ``gpu``, compare the CUDA path with the
reference program on a GPU."""
import pytest
import torch

from cclnn.models import nlsa
from cclnn.models.attention_kernels import AttentionKernel, CpuFlash, Forward, kernel_for
from cclnn.models.nlsa import NonLocalSparseAttention, fast_sparse_attention, reference_sparse_attention


class MathKernel(AttentionKernel):
    """The kernel contract in explicit tensors: probabilities from the given log-sum-exp,
    the softmax gradient from the given output."""
    name = "math"

    def forward(self, q, k, v):
        scores = q @ k.transpose(-1, -2)
        lse = scores.logsumexp(-1)
        return Forward(torch.exp(scores - lse.unsqueeze(-1)) @ v, lse, (lse,))

    def backward(self, grad, q, k, v, out, forward_state):
        p = torch.exp(q @ k.transpose(-1, -2) - forward_state[0].unsqueeze(-1))
        ds = p * (grad @ v.transpose(-1, -2) - (grad * out).sum(-1, keepdim=True))
        return ds @ k, ds.transpose(-1, -2) @ q, p.transpose(-1, -2) @ grad


def test_math_kernel_keeps_the_cpu_flash_contract():
    """Forward, and backward with a foreign output and a scaled gradient (what NLSA passes)."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 16, 8), torch.randn(2, 3, 48, 8), torch.randn(2, 3, 48, 8)
    fused, math = CpuFlash().forward(q, k, v), MathKernel().forward(q, k, v)
    assert torch.allclose(fused.out, math.out, atol=1e-5)
    assert torch.allclose(fused.lse, math.lse, atol=1e-5)
    grad, other_out = torch.randn(2, 3, 16, 8), torch.randn(2, 3, 16, 8)
    for a, b in zip(CpuFlash().backward(grad, q, k, v, other_out, fused.state),
                    MathKernel().backward(grad, q, k, v, other_out, math.state)):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 40, 4, 8), (2, 143, 4, 8), (2, 150, 2, 12)])
def test_fused_path_through_another_kernel_equals_reference(shape, monkeypatch):
    """The fused algorithm (blocks, padding, merge, exact gradient) with a kernel that is not
    the CPU's: what runs on CUDA apart from the kernel call itself."""
    n, length, match, channels = shape
    torch.manual_seed(1)
    monkeypatch.setattr(nlsa, "ROUND_ELEMENTS", 0)  # blocks of chunks, as on large images
    query = torch.randn(n, length, match, requires_grad=True)
    value = torch.randn(n, length, channels, requires_grad=True)
    rotations = torch.randn(match, 3, 2)
    results = []
    for run in (lambda: reference_sparse_attention(query, value, rotations, 16),
                lambda: fast_sparse_attention(query, value, rotations, 16, kernel=MathKernel())):
        query.grad = value.grad = None
        out = run()
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float32)).view_as(out))
        results.append((out.detach(), query.grad.clone(), value.grad.clone()))
    for a, b in zip(*results):
        assert (a - b).abs().max().item() <= 1e-5


def test_kernel_for_each_device_and_dtype():
    names = {(device, dtype, head): getattr(kernel_for(device, dtype, head), "name", None)
             for device, dtype, head in [("cpu", torch.float32, 64), ("cpu", torch.float64, 64),
                                         ("cpu", torch.bfloat16, 64),
                                         ("cuda", torch.float32, 64), ("cuda", torch.bfloat16, 64),
                                         ("cuda", torch.float16, 256), ("cuda", torch.float16, 12),
                                         ("cuda", torch.float16, 264), ("cuda", torch.float64, 64),
                                         ("mps", torch.float32, 64)]}
    assert list(names.values()) == ["cpu-flash", None, None, "cuda-efficient", "cuda-flash",
                                    "cuda-flash", "cuda-efficient", "cuda-efficient", None, None]


def test_no_kernel_falls_back_to_the_reference_program():
    module = NonLocalSparseAttention(8, n_hashes=2, chunk_size=16, reduction=2).double()
    x = torch.randn(1, 8, 9, 9, dtype=torch.float64)
    rotations = torch.randn(module.rotations_shape(9, 9), dtype=torch.float64)
    assert not nlsa.fast_path_available(torch.zeros(1, 1, 8, dtype=torch.float64))
    with torch.no_grad():
        fast = module(x, rotations=rotations)
        module.use_fast = False
        assert torch.equal(fast, module(x, rotations=rotations))


def _cuda_pair(dtype, size=(23, 29), channels=64):
    torch.manual_seed(0)
    module = NonLocalSparseAttention(channels, chunk_size=144).cuda()
    x = torch.randn(2, channels, *size, device="cuda")
    rotations = torch.randn(module.rotations_shape(*size), device="cuda")
    results = {}
    for fast in (False, True):
        module.use_fast = fast
        module.zero_grad()
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            y = module(xi, rotations=rotations)
        y.float().backward(torch.cos(torch.arange(y.numel(), device="cuda",
                                                  dtype=torch.float32)).view_as(y))
        results[fast] = [y.detach().float(), xi.grad] + [p.grad for p in module.parameters()]
    return results


@pytest.mark.gpu
def test_cuda_fused_path_equals_reference_in_float32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = _cuda_pair(torch.float32)
    for a, b in zip(results[False], results[True]):
        assert (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_fused_path_under_autocast_is_close_and_finite(dtype):
    results = _cuda_pair(dtype)
    for a, b in zip(results[False], results[True]):
        assert torch.isfinite(b).all()
        assert (a - b).abs().max().item() <= 0.05 * max(1.0, a.abs().max().item())


@pytest.mark.gpu
def test_cuda_inference_path_equals_reference():
    module = NonLocalSparseAttention(64).cuda().eval()
    x = torch.randn(1, 64, 40, 50, device="cuda")
    with torch.no_grad():
        fast = module(x)
        module.use_fast = False
        assert (fast - module(x)).abs().max().item() <= 1e-4
