"""Triton kernels of the fused score head, forward and backward, as torch.library triton ops.

The maths is the reference's (score_head.py), row by row in float32, with wn = weight * norm_weight
formed tile by tile from the (K, H) weight and the (H,) norm weight as they are (no copies):
    forward:  dots_k = x . wn_k and ss = x . x in one pass over H; r = rsqrt(ss / H + eps) (1 without
              a norm); s = r * dots; p = softmax(s / T); mean = p . v; var = p . (v - mean)^2
    backward: g = dL/dp + dL/dmean * v + dL/dvar * (v - mean)^2; ds = p * (g - p . g) / T;
              dL/dx = r * (ds @ wn) - x * r^2 * (ds . s) / H   (ds @ wn without a norm);
              the weight and norm-weight gradients come from (ds * r)^T @ x (registration.weight_grads)
The ops are registered with `torch.library.triton_op`, so torch.compile sees the kernels (opaque
custom ops under the interpreter), plus fakes and the autograd formula (registration.py). On the CPU they run under TRITON_INTERPRET=1, which must
be set before triton is first imported.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from zreward.ops.registration import register_fused, weight_grads
from zreward.testing import triton_interpreted

# triton_op lets torch.compile trace into the kernels; the CPU interpreter's kernels cannot be traced
# (functionalization would run them on fake tensors), so there the ops are opaque custom ops.
_define_op = torch.library.custom_op if triton_interpreted() else triton_op


@triton.jit
def _score_head_fwd_kernel(x_ptr, w_ptr, nw_ptr, v_ptr, probs_ptr, mean_ptr, var_ptr, logits_ptr, rstd_ptr, H, K,
                           eps, inv_temp, HAS_NORM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    dots = tl.zeros((BLOCK_K,), dtype=tl.float32)
    ss = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        x = tl.load(x_ptr + row * H + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        ss += x * x
        if HAS_NORM:
            x = x * tl.load(nw_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + offs_k[:, None] * H + offs_h[None, :], mask=mask_k[:, None] & mask_h[None, :], other=0.0)
        dots += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
    if HAS_NORM:
        r = 1.0 / tl.sqrt(tl.sum(ss, axis=0) / H + eps)
    else:
        r = 1.0
    s = dots * r
    tl.store(logits_ptr + row * K + offs_k, s, mask=mask_k)
    z = tl.where(mask_k, s * inv_temp, float("-inf"))
    e = tl.exp(z - tl.max(z, axis=0))
    p = e / tl.sum(e, axis=0)
    v = tl.load(v_ptr + offs_k, mask=mask_k, other=0.0)
    m = tl.sum(p * v, axis=0)
    d = tl.where(mask_k, v - m, 0.0)
    tl.store(probs_ptr + row * K + offs_k, p, mask=mask_k)
    tl.store(mean_ptr + row, m)
    tl.store(var_ptr + row, tl.sum(p * d * d, axis=0))
    tl.store(rstd_ptr + row, r)


@triton.jit
def _score_head_bwd_kernel(x_ptr, w_ptr, nw_ptr, v_ptr, probs_ptr, mean_ptr, logits_ptr, rstd_ptr, gp_ptr, gm_ptr, gv_ptr,
                           gx_ptr, ds_ptr, H, K, inv_temp, HAS_NORM: tl.constexpr, BLOCK_H: tl.constexpr,
                           BLOCK_K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    p = tl.load(probs_ptr + row * K + offs_k, mask=mask_k, other=0.0)
    v = tl.load(v_ptr + offs_k, mask=mask_k, other=0.0)
    d = v - tl.load(mean_ptr + row)
    g = tl.load(gp_ptr + row * K + offs_k, mask=mask_k, other=0.0)
    g += tl.load(gm_ptr + row) * v + tl.load(gv_ptr + row) * d * d
    ds = p * (g - tl.sum(p * g, axis=0)) * inv_temp
    ds = tl.where(mask_k, ds, 0.0)
    tl.store(ds_ptr + row * K + offs_k, ds, mask=mask_k)
    if HAS_NORM:
        s = tl.load(logits_ptr + row * K + offs_k, mask=mask_k, other=0.0)
        r = tl.load(rstd_ptr + row)
        corr = r * r * tl.sum(ds * s, axis=0) / H
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        w = tl.load(w_ptr + offs_k[:, None] * H + offs_h[None, :], mask=mask_k[:, None] & mask_h[None, :], other=0.0)
        gu = tl.sum(w.to(tl.float32) * ds[:, None], axis=0)
        if HAS_NORM:
            nw = tl.load(nw_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + row * H + offs_h, mask=mask_h, other=0.0).to(tl.float32)
            gu = r * nw * gu - x * corr
        tl.store(gx_ptr + row * H + offs_h, gu.to(gx_ptr.dtype.element_ty), mask=mask_h)


def _blocks(h: int, k: int) -> tuple[int, int]:
    """(BLOCK_H, BLOCK_K): the (K, H) weight tile stays at about 4k elements (32 registers a thread)."""
    block_k = max(triton.next_power_of_2(k), 16)
    return max(16, min(triton.next_power_of_2(h), 4096 // block_k)), block_k


def _rows(hidden, weight, values, norm_weight):
    """The kernels read unit-stride rows and float32 values (no copy when that is what they get)."""
    return (hidden.contiguous(), weight.contiguous(), values.float().contiguous(),
            None if norm_weight is None else norm_weight.contiguous())


@_define_op("zreward::score_head_triton_fwd", mutates_args=())
def score_head_triton_fwd(hidden: Tensor, weight: Tensor, values: Tensor, norm_weight: Optional[Tensor], eps: float,
                          temperature: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(probs (N, K), mean (N,), var (N,), logits (N, K), rstd (N,)), float32."""
    hidden, weight, values, norm_weight = _rows(hidden, weight, values, norm_weight)
    n, h = hidden.shape
    k = weight.shape[0]
    f32 = dict(device=hidden.device, dtype=torch.float32)
    probs, logits = torch.empty((n, k), **f32), torch.empty((n, k), **f32)
    mean, var, rstd = torch.empty((n,), **f32), torch.empty((n,), **f32), torch.empty((n,), **f32)
    if n > 0:
        block_h, block_k = _blocks(h, k)
        wrap_triton(_score_head_fwd_kernel)[(n,)](
            hidden, weight, hidden if norm_weight is None else norm_weight, values, probs, mean, var, logits, rstd,
            h, k, eps, 1.0 / temperature, HAS_NORM=norm_weight is not None, BLOCK_H=block_h, BLOCK_K=block_k,
        )
    return probs, mean, var, logits, rstd


@_define_op("zreward::score_head_triton_bwd", mutates_args=())
def score_head_triton_bwd(grad_probs: Tensor, grad_mean: Tensor, grad_var: Tensor, hidden: Tensor, weight: Tensor,
                          values: Tensor, norm_weight: Optional[Tensor], probs: Tensor, mean: Tensor, logits: Tensor,
                          rstd: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_hidden (N, H), grad_weight (K, H), grad_norm_weight (H,) or (0,)) from the upstream gradients."""
    hidden, weight, values, norm_weight = _rows(hidden, weight, values, norm_weight)
    n, h = hidden.shape
    k = weight.shape[0]
    grad_hidden = torch.empty_like(hidden)
    ds = torch.empty((n, k), device=hidden.device, dtype=torch.float32)
    if n > 0:
        block_h, block_k = _blocks(h, k)
        wrap_triton(_score_head_bwd_kernel)[(n,)](
            hidden, weight, hidden if norm_weight is None else norm_weight, values, probs.contiguous(),
            mean.contiguous(),
            logits.contiguous(), rstd.contiguous(), grad_probs.float().contiguous(), grad_mean.float().contiguous(),
            grad_var.float().contiguous(), grad_hidden, ds, h, k, 1.0 / temperature,
            HAS_NORM=norm_weight is not None, BLOCK_H=block_h, BLOCK_K=block_k,
        )
    grad_weight, grad_norm_weight = weight_grads(ds, hidden, weight, rstd, norm_weight)
    return grad_hidden, grad_weight, grad_norm_weight


register_fused("zreward::score_head_triton_fwd", "zreward::score_head_triton_bwd", score_head_triton_bwd)
