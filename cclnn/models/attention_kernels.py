"""Fused attention kernels that return the log-sum-exp, behind one interface, for NLSA's
hash rounds (:mod:`cclnn.models.nlsa`).

Every kernel takes queries [B, H, Lq, E] and keys/values [B, H, Lk, E] (any strides with a
contiguous last dimension, so NLSA's overlapping key windows are views), attends without a
mask or dropout at scale 1, and returns the output and the float32 log-sum-exp [B, H, Lq]
of each query's scores. Its backward takes the output gradient, the inputs, an output and a
log-sum-exp, and computes the softmax's gradient from the given output (``D = rowsum(dO *
O)``) and the probabilities from the given log-sum-exp: NLSA passes the merged output of all
rounds and the round's own log-sum-exp, which makes the result the exact gradient of the
merge (see :class:`cclnn.models.nlsa._FusedLSHAttention`).

* CPU, float32: PyTorch's CPU flash-attention kernel.
* CUDA, float32: the memory-efficient kernel (its log-sum-exp is padded to a multiple of 32
  queries; the padding is dropped for the merge and kept for its backward).
* CUDA, float16/bfloat16: the flash kernel (head size a multiple of 8, at most 256), else the
  memory-efficient kernel.

Elsewhere (other devices, float64) NLSA runs its reference tensor program.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

_aten = torch.ops.aten
_CPU_FLASH = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_CPU_FLASH_BACKWARD = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
_FLASH_HEAD_SIZES = range(8, 257, 8)


class Forward(NamedTuple):
    out: torch.Tensor  # [B, H, Lq, E], the kernel's dtype
    lse: torch.Tensor  # [B, H, Lq], float32
    state: tuple  # what the kernel's backward needs besides the inputs (padded lse, rng state)


class AttentionKernel:
    """A fused kernel: :meth:`forward` and :meth:`backward` as described in the module."""

    name = "abstract"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Forward:
        raise NotImplementedError

    def backward(self, grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 out: torch.Tensor, forward_state: tuple) -> tuple[torch.Tensor, ...]:
        """(dq, dk, dv) for output gradient ``grad`` with ``out`` standing for the output."""
        raise NotImplementedError


class CpuFlash(AttentionKernel):
    name = "cpu-flash"

    def forward(self, q, k, v):
        out, lse = _CPU_FLASH(q, k, v, 0.0, False, scale=1.0)
        return Forward(out, lse, (lse,))

    def backward(self, grad, q, k, v, out, forward_state):
        return _CPU_FLASH_BACKWARD(grad, q, k, v, out, forward_state[0], 0.0, False, scale=1.0)


class CudaEfficient(AttentionKernel):
    name = "cuda-efficient"

    def forward(self, q, k, v):
        out, lse, seed, offset = _aten._scaled_dot_product_efficient_attention(
            q, k, v, None, True, 0.0, False, scale=1.0)
        return Forward(out, lse[..., :q.shape[-2]], (lse, seed, offset))

    def backward(self, grad, q, k, v, out, forward_state):
        lse, seed, offset = forward_state
        dq, dk, dv, _ = _aten._scaled_dot_product_efficient_attention_backward(
            grad, q, k, v, None, out, lse, seed, offset, 0.0, [True, True, True, False], False,
            scale=1.0)
        return dq, dk, dv


class CudaFlash(AttentionKernel):
    name = "cuda-flash"

    def forward(self, q, k, v):
        out, lse, cum_q, cum_k, max_q, max_k, rng, unused, _ = \
            _aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=1.0)
        return Forward(out, lse, (lse, cum_q, cum_k, max_q, max_k, rng, unused))

    def backward(self, grad, q, k, v, out, forward_state):
        lse, cum_q, cum_k, max_q, max_k, rng, unused = forward_state
        return _aten._scaled_dot_product_flash_attention_backward(
            grad, q, k, v, out, lse, cum_q, cum_k, max_q, max_k, 0.0, False, rng, unused,
            scale=1.0)


def kernel_for(device_type: str, dtype: torch.dtype, head_size: int) -> Optional[AttentionKernel]:
    """The fused kernel for tensors of ``dtype`` on ``device_type`` with ``head_size``
    channels per head, or None where there is none (NLSA then runs its reference program)."""
    if device_type == "cpu":
        if dtype == torch.float32 and _CPU_FLASH is not None and _CPU_FLASH_BACKWARD is not None:
            return CpuFlash()
        return None
    if device_type == "cuda":
        if dtype in (torch.float16, torch.bfloat16) and head_size in _FLASH_HEAD_SIZES:
            return CudaFlash()
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            return CudaEfficient()
    return None
