"""Inputs, references and helpers shared by the score-head tests (tests/ops/test_*score_head*.py)."""

from __future__ import annotations

import math

import torch

from zreward.ops.score_head import score_head_reference_full, triton_backend_reason
from zreward.testing import has_ext


def make_inputs(n, h, k, dtype=torch.float32, norm=True, seed=0, device="cpu", requires_grad=False):
    """hidden (n, h), weight (k, h), values (k,), norm_weight (h,)|None: logits of order a few units."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g) * 2
    weight = torch.randn(k, h, generator=g) * (2 / math.sqrt(h))
    values = torch.linspace(1.0, 5.0, k)
    norm_weight = (1 + 0.3 * torch.randn(h, generator=g)) if norm else None
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    out = [hidden.to(device, dtype), weight.to(device, dtype), values.to(device, ct),
           None if norm_weight is None else norm_weight.to(device, dtype)]
    if requires_grad:
        for t in (out[0], out[1], out[3]):
            if t is not None:
                t.requires_grad_(True)
    return out


def upstream(n, k, device="cpu", seed=1):
    """Per-sample upstream gradients for (probs, mean, var): every row weighted differently."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g).to(device), torch.randn(n, generator=g).to(device),
            torch.randn(n, generator=g).to(device))


def reference64(hidden, weight, values, norm_weight, eps=1e-6, temperature=1.0):
    """(probs, mean, var) of the reference in float64 from the same (rounded) inputs."""
    d = lambda t: None if t is None else t.detach().double()
    return score_head_reference_full(d(hidden), d(weight), d(values), d(norm_weight), eps, temperature)[:3]


def grads(outputs, inputs, up):
    """Gradients of sum(probs * gp) + sum(mean * gm) + sum(var * gv) w.r.t. the non-None inputs."""
    loss = sum((o * g.to(o.dtype)).sum() for o, g in zip(outputs, up))
    return torch.autograd.grad(loss, [t for t in inputs if t is not None])


def reference64_grads(hidden, weight, values, norm_weight, up, eps=1e-6, temperature=1.0):
    leaves = [None if t is None else t.detach().double().requires_grad_(True) for t in (hidden, weight, norm_weight)]
    out = score_head_reference_full(leaves[0], leaves[1], values.double(), leaves[2], eps, temperature)[:3]
    return grads(out, leaves, [g.double() for g in up])


def live_backends(device: str) -> list[str]:
    """The backends that run float32 on `device` in this process."""
    names = ["reference"]
    if has_ext(device):
        names.append("ext")
    if triton_backend_reason(torch.device(device)) is None:
        names.append("triton")
    return names
