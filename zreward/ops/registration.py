"""The torch.library halves shared by the fused backends (the C++ ext ops and the Triton ops).

Each fused backend provides two ops with one schema pair:
    <fwd>(hidden (N, H), weight (K, H), values (K,), norm_weight (H,)?, eps, temperature)
        -> (probs (N, K), mean (N,), var (N,), logits (N, K) before the temperature, rstd (N,))
    <bwd>(grad_probs, grad_mean, grad_var, hidden, weight, values, norm_weight?, probs, mean, logits,
          rstd, temperature) -> (grad_hidden (N, H), grad_weight (K, H), grad_norm_weight (H,) or (0,))
This module registers their fake (meta) implementations, for torch.compile / torch.export, and the
autograd formula that connects forward to backward.

The backward is computed from the upstream gradients it is given (a reward loss weights every sample
differently); nothing is precomputed in the forward under an assumed upstream gradient.
"""

from __future__ import annotations

import torch

from zreward.ops.score_head import compute_dtype


def forward_fake(hidden, weight, values, norm_weight, eps, temperature):
    n, k = hidden.shape[0], weight.shape[0]
    ct = compute_dtype(hidden.dtype)
    probs = hidden.new_empty((n, k), dtype=ct)
    logits = hidden.new_empty((n, k), dtype=ct)
    return probs, hidden.new_empty((n,), dtype=ct), hidden.new_empty((n,), dtype=ct), logits, hidden.new_empty(
        (n,), dtype=ct
    )


def backward_fake(grad_probs, grad_mean, grad_var, hidden, weight, values, norm_weight, probs, mean, logits, rstd,
                  temperature):
    gnw = torch.empty_like(norm_weight, memory_format=torch.contiguous_format) if norm_weight is not None else weight.new_empty((0,))
    return torch.empty_like(hidden, memory_format=torch.contiguous_format), torch.empty_like(
        weight, memory_format=torch.contiguous_format), gnw


def weight_grads(ds, hidden, weight, rstd, norm_weight):
    """dL/dweight (K, H) and dL/dnorm_weight (H,) from ds = dL/dlogits (N, K); see csrc/score_head_common.h."""
    ct = ds.dtype
    if norm_weight is None:
        return (ds.T @ hidden.to(ct)).to(weight.dtype), weight.new_empty((0,))
    m = (ds * rstd.unsqueeze(1)).T @ hidden.to(ct)
    return (m * norm_weight.to(ct)).to(weight.dtype), (m * weight.to(ct)).sum(0).to(norm_weight.dtype)


def _setup_context(ctx, inputs, output):
    hidden, weight, values, norm_weight, _eps, temperature = inputs
    probs, mean, _var, logits, rstd = output
    ctx.save_for_backward(hidden, weight, values, norm_weight, probs, mean, logits, rstd)
    ctx.temperature = temperature
    ctx.mark_non_differentiable(logits, rstd)


def _make_backward(bwd_op):
    def backward(ctx, grad_probs, grad_mean, grad_var, _grad_logits, _grad_rstd):
        hidden, weight, values, norm_weight, probs, mean, logits, rstd = ctx.saved_tensors
        # An output the loss does not use arrives as None: it contributes nothing.
        grad_probs = torch.zeros_like(probs) if grad_probs is None else grad_probs
        grad_mean = torch.zeros_like(mean) if grad_mean is None else grad_mean
        grad_var = torch.zeros_like(mean) if grad_var is None else grad_var
        gx, gw, gnw = bwd_op(grad_probs, grad_mean, grad_var, hidden, weight, values, norm_weight, probs, mean,
                             logits, rstd, ctx.temperature)
        return gx, gw, None, (gnw if norm_weight is not None else None), None, None

    return backward


def register_fused(fwd_name: str, bwd_name: str, bwd_op, fakes: bool = True) -> None:
    """Registers fakes for `fwd_name`/`bwd_name` ("zreward::...") and forward's autograd via `bwd_op`."""
    if fakes:
        torch.library.register_fake(fwd_name)(forward_fake)
        torch.library.register_fake(bwd_name)(backward_fake)
    torch.library.register_autograd(fwd_name, _make_backward(bwd_op), setup_context=_setup_context)
