"""The fused score head: (final RMSNorm) -> K score-token logits -> softmax -> mean and variance.

A reward model reads K bin probabilities at each score slot. The transformers way computes the full
vocabulary logits (N, V) with V ~ 150k-250k and keeps K ~ 9 columns; this op computes only the K
rows of lm_head it needs, optionally fused with the backbone's final RMSNorm, and returns the
distribution and its first two moments.

    hidden: (N, H)  slot hidden states (before the final norm when norm_weight is given)
    weight: (K, H)  the score-token rows of lm_head, same dtype as hidden
    values: (K,)    the bin values
    norm_weight: (H,) optional; x_hat = x * rsqrt(mean(x**2) + eps) * norm_weight, in float32
    probs = softmax(x_hat @ weight.T / temperature)   (N, K)
    mean = probs @ values, var = sum_k probs_k (values_k - mean)**2   (N,), (N,)

Everything is computed in float32 (float64 for float64 inputs); outputs are in that dtype.
Backends: "reference" (plain torch, this module, the ground truth), "triton" (triton_score_head.py),
"ext" (the compiled zreward._C, csrc/), "auto". Fused backends return gradients for hidden, weight
and norm_weight; the bin values are constants there.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor, nn

from zreward.distribution import moments
from zreward.errors import InputError
from zreward.testing import triton_interpreted

BACKENDS = ("auto", "reference", "triton", "ext")
# Names the backend that "auto" resolves to in this process (unset or "auto": auto's own pick).
BACKEND_ENV = "ZREWARD_SCORE_HEAD_BACKEND"
# The largest K the fused kernels handle (registers / stack arrays sized at compile time).
MAX_K = 64
_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_HAS_TRITON = importlib.util.find_spec("triton") is not None


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (gradcheck, references); everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --- the reference -------------------------------------------------------------------------------
def score_head_reference_full(hidden: Tensor, weight: Tensor, values: Tensor, norm_weight: Tensor | None = None,
                              eps: float = 1e-6, temperature: float = 1.0):
    """The ground truth, plain torch. hidden (N, H), weight (K, H), values (K,), norm_weight (H,)|None.

    Returns (probs (N, K), mean (N,), var (N,), logits (N, K) before the temperature, rstd (N,)), the
    same five tensors as the fused forward ops (rstd is 1 without a norm), so that it also serves as
    their decomposition for export.
    """
    ct = compute_dtype(hidden.dtype)
    x = hidden.to(ct)
    if norm_weight is not None:
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        x = x * rstd * norm_weight.to(ct)
        rstd = rstd.squeeze(-1)
    else:
        rstd = torch.ones(x.shape[:-1], dtype=ct, device=x.device)
    logits = x @ weight.to(ct).T
    # softmax of the tempered logits in the compute dtype: for float32 this is exactly
    # zreward.distribution.softmax_probs; the moments are zreward.distribution.moments.
    probs = torch.softmax(logits / temperature, dim=-1)
    mean, var = moments(probs, values.to(ct))
    return probs, mean, var, logits, rstd


def score_head_reference(hidden: Tensor, weight: Tensor, values: Tensor, *, norm_weight: Tensor | None = None,
                         eps: float = 1e-6, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(probs (N, K), mean (N,), var (N,)) in plain torch; see the module docstring."""
    return score_head_reference_full(hidden, weight, values, norm_weight, eps, temperature)[:3]


# --- validation ----------------------------------------------------------------------------------
def _check_inputs(hidden, weight, values, norm_weight, eps, temperature):
    for name, t in (("hidden", hidden), ("weight", weight), ("values", values), ("norm_weight", norm_weight)):
        if t is not None and not isinstance(t, Tensor):
            raise InputError(f"score_head: {name} must be a torch.Tensor, got {type(t).__name__}")
    if hidden.dim() < 1 or weight.dim() != 2 or values.dim() != 1:
        raise InputError(
            f"score_head: expected hidden (..., H), weight (K, H), values (K,); got hidden "
            f"{tuple(hidden.shape)}, weight {tuple(weight.shape)}, values {tuple(values.shape)}"
        )
    k, h = weight.shape
    if hidden.shape[-1] != h:
        raise InputError(f"score_head: hidden has H={hidden.shape[-1]} but weight (K, H) is {tuple(weight.shape)}")
    if values.shape[0] != k:
        raise InputError(f"score_head: values has {values.shape[0]} bins but weight has K={k} rows")
    if k < 1 or h < 1:
        raise InputError(f"score_head: weight (K, H) must be non-empty, got {tuple(weight.shape)}")
    if norm_weight is not None and tuple(norm_weight.shape) != (h,):
        raise InputError(f"score_head: norm_weight must be ({h},), got {tuple(norm_weight.shape)}")
    if not hidden.is_floating_point():
        raise InputError(f"score_head: hidden must be a floating-point tensor, got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise InputError(f"score_head: weight dtype {weight.dtype} differs from hidden dtype {hidden.dtype}")
    for name, t in (("values", values), ("norm_weight", norm_weight)):
        if t is not None and not (t.is_floating_point() or name == "values" and not t.is_complex()):
            raise InputError(f"score_head: {name} must be real, got {t.dtype}")
    for name, t in (("weight", weight), ("values", values), ("norm_weight", norm_weight)):
        if t is not None and t.device != hidden.device:
            raise InputError(f"score_head: {name} is on {t.device} but hidden is on {hidden.device}")
    if not (temperature > 0):
        raise InputError(f"score_head: temperature must be > 0, got {temperature}")
    if not (eps >= 0):
        raise InputError(f"score_head: eps must be >= 0, got {eps}")


def triton_backend_reason(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on `device` (a sentence), or None when they can."""
    if not _HAS_TRITON:
        return "triton is not installed (pip install 'zreward[triton]')"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and triton_interpreted():
        return None
    return f"the Triton kernels need a CUDA device (or TRITON_INTERPRET=1 for the CPU interpreter), got {device.type}"


def fused_support(backend: str, hidden: Tensor, k: int) -> str | None:
    """Why `backend` cannot run these inputs (a sentence), or None when it can."""
    from zreward.ops import extension

    if k > MAX_K:
        return f"K={k} is larger than the {backend} kernels support (K <= {MAX_K})"
    if backend == "ext":
        reason = extension.unavailable_reason(hidden.device.type)
        if reason:
            return reason
        if hidden.dtype not in _FUSED_DTYPES + ((torch.float64,) if hidden.device.type == "cpu" else ()):
            return f"the ext backend on {hidden.device.type} does not support {hidden.dtype}"
        return None
    reason = triton_backend_reason(hidden.device)
    if reason:
        return reason
    if hidden.dtype not in _FUSED_DTYPES:
        return f"the triton backend supports float32, bfloat16 and float16, not {hidden.dtype}"
    return None


def resolve_backend(backend: str, hidden: Tensor, k: int) -> str:
    """The backend that runs: `backend` itself (InputError if it cannot), or auto's pick.

    auto's order: on the CPU ext, then the reference. Measured with bench/bench_score_head.py --quick
    (N=64, H=3584, K=9, fp32, one thread): ext 0.31 ms / 5 KiB vs the reference 0.44 ms / 1.8 MiB forward,
    1.3 ms vs 2.0 ms forward + backward (bench/results/score_head.json). The Triton interpreter is for
    tests and never picked. On CUDA ext, then triton, then the reference: both fused kernels move the
    same bytes, and the CUDA kernels need no JIT compile; bench/gpu_check.py measures the two there.
    """
    if backend == "auto" and os.environ.get(BACKEND_ENV, "auto") != "auto":
        backend = os.environ[BACKEND_ENV]  # a process-wide choice, e.g. to train on the reference path
        if backend not in BACKENDS:
            raise InputError(f"{BACKEND_ENV} must be one of {BACKENDS}, got {backend!r}")
    if backend not in BACKENDS:
        raise InputError(f"score_head: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    if backend != "auto":
        reason = fused_support(backend, hidden, k)
        if reason:
            raise InputError(f"score_head: backend={backend!r} cannot run: {reason}")
        return backend
    order = ("ext", "triton") if hidden.device.type == "cuda" else ("ext",)
    for name in order:
        if fused_support(name, hidden, k) is None:
            return name
    return "reference"


# --- the entry point ----------------------------------------------------------------------------
def score_head(hidden: Tensor, weight: Tensor, values: Tensor, *, norm_weight: Tensor | None = None,
               eps: float = 1e-6, temperature: float = 1.0, backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """(probs (..., K), mean (...), var (...)) for hidden (..., H); see the module docstring.

    While exporting to ONNX the reference maths is traced (standard ops, no plugin needed); under
    torch.export the chosen fused op stays one node, and `decompositions()` lowers it.
    """
    _check_inputs(hidden, weight, values, norm_weight, eps, temperature)
    lead, (k, h) = hidden.shape[:-1], weight.shape
    x = hidden.reshape(-1, h)
    if torch.onnx.is_in_onnx_export() or x.shape[0] == 0:
        # ONNX graphs carry standard ops only, and empty batches need no kernel launch.
        return _unflatten(score_head_reference_full(x, weight, values, norm_weight, eps, temperature)[:3], lead, k)
    name = resolve_backend(backend, x, k)
    if name == "reference":
        out = score_head_reference_full(x, weight, values, norm_weight, eps, temperature)
    else:
        op = _fused_forward_op(name)
        ct = compute_dtype(x.dtype)
        # Kernels read rows with unit stride; a non-contiguous view is copied once here.
        out = op(x.contiguous(), weight.contiguous(), values.detach().to(ct).contiguous(),
                 None if norm_weight is None else norm_weight.contiguous(), float(eps), float(temperature))
    return _unflatten(out[:3], lead, k)


def _unflatten(out, lead, k):
    probs, mean, var = out
    return probs.reshape(*lead, k), mean.reshape(lead), var.reshape(lead)


def _fused_forward_op(name: str):
    if name == "ext":
        return torch.ops.zreward.score_head_fwd.default
    from zreward.ops import triton_score_head

    return triton_score_head.score_head_triton_fwd


def decompositions() -> dict:
    """{fused forward op: reference} for ExportedProgram.run_decompositions (ONNX, TensorRT).

    ep = torch.export.export(model, args); ep = ep.run_decompositions(decompositions())
    """
    from zreward.ops import extension

    extension.load()
    table = {}
    for op_name in ("score_head_fwd", "score_head_triton_fwd"):
        if hasattr(torch.ops.zreward, op_name):
            table[getattr(torch.ops.zreward, op_name).default] = score_head_reference_full
    return table


class ScoreHead(nn.Module):
    """Holds the head's tensors and calls `score_head`: weight (K, H), values (K,), norm_weight (H,)|None."""

    def __init__(self, weight: Tensor, values: Tensor, norm_weight: Tensor | None = None, eps: float = 1e-6,
                 temperature: float = 1.0, backend: str = "auto"):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.register_buffer("values", values)
        self.norm_weight = None if norm_weight is None else nn.Parameter(norm_weight)
        self.eps, self.temperature, self.backend = eps, temperature, backend

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return score_head(hidden, self.weight, self.values, norm_weight=self.norm_weight, eps=self.eps,
                          temperature=self.temperature, backend=self.backend)
