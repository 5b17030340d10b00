"""The Triton score-head kernels against the float64 reference: on a CUDA GPU, or on the CPU under
TRITON_INTERPRET=1 (which must be set before triton is imported: test_triton_cpu_interpreter.py runs
this file in a fresh process with it). Without either, every test here skips with the reason."""

from __future__ import annotations

import pytest
import torch
from score_head_cases import grads, live_backends, make_inputs, reference64, reference64_grads, upstream

from zreward.errors import InputError
from zreward.ops import MAX_K, score_head
from zreward.testing import assert_close, has_cuda, has_triton, triton_interpreted

pytestmark = pytest.mark.skipif(
    not has_triton() or not (has_cuda() or triton_interpreted()),
    reason="needs triton and a CUDA GPU, or TRITON_INTERPRET=1 (test_triton_cpu_interpreter.py sets it)",
)
DEVICE = "cpu" if triton_interpreted() or not has_cuda() else "cuda"
# The interpreter runs each program in numpy: small H, and N=123 at two points only, on the CPU.
if DEVICE == "cpu":
    CASES = [(n, h, k) for n in (1, 7) for h in (1, 37, 130) for k in (5, 9, 10)] + [(123, 37, 9), (123, 130, 10)]
else:
    CASES = [(n, h, k) for n in (1, 7, 123) for h in (1, 37, 4095, 4096) for k in (5, 9, 10)]


@pytest.mark.parametrize("n, h, k", CASES)
def test_triton_matches_float64_reference(n, h, k):
    for norm in (True, False):
        inputs = make_inputs(n, h, k, norm=norm, seed=n + h + k, device=DEVICE)
        out = score_head(*inputs[:3], norm_weight=inputs[3], temperature=0.9, backend="triton")
        for got, want in zip(out, reference64(*inputs, temperature=0.9)):
            assert got.dtype == torch.float32
            assert_close(got, want, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("norm", [True, False])
def test_triton_dtypes_outputs_and_grads(dtype, norm):
    n, h, k = 7, 67, 9
    hidden, weight, values, nw = make_inputs(n, h, k, dtype=dtype, norm=norm, device=DEVICE, requires_grad=True)
    up = upstream(n, k, DEVICE)
    out = score_head(hidden, weight, values, norm_weight=nw, temperature=1.3, backend="triton")
    for got, want in zip(out, reference64(hidden, weight, values, nw, temperature=1.3)):
        assert_close(got, want, dtype=torch.float32)
    inputs = (hidden, weight, nw)
    ref = reference64_grads(hidden, weight, values, nw, up, temperature=1.3)
    for got, want, t in zip(grads(out, inputs, up), ref, [t for t in inputs if t is not None]):
        assert got.dtype == t.dtype
        assert_close(got, want, dtype=dtype)


def test_triton_backward_uses_the_upstream_gradient_it_is_given():
    hidden, weight, values, nw = make_inputs(5, 24, 9, device=DEVICE, requires_grad=True)
    probs, mean, var = score_head(hidden, weight, values, norm_weight=nw, backend="triton")
    for seed in (1, 2):
        w = torch.randn(5, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
        g = torch.autograd.grad((w * mean).sum(), weight, retain_graph=True)[0]
        up = (torch.zeros(5, 9, device=DEVICE), w, torch.zeros(5, device=DEVICE))
        assert_close(g, reference64_grads(hidden, weight, values, nw, up)[1], dtype=torch.float32)


@pytest.mark.parametrize("norm", [True, False])
def test_triton_opcheck(norm):
    hidden, weight, values, nw = make_inputs(4, 24, 9, norm=norm, device=DEVICE, requires_grad=True)
    fwd, bwd = torch.ops.zreward.score_head_triton_fwd.default, torch.ops.zreward.score_head_triton_bwd.default
    torch.library.opcheck(fwd, (hidden, weight, values, nw, 1e-6, 0.9))
    with torch.no_grad():
        probs, mean, _, logits, rstd = fwd(hidden, weight, values, nw, 1e-6, 0.9)
    d = lambda t: None if t is None else t.detach()
    up = upstream(4, 9, DEVICE)
    torch.library.opcheck(bwd, (*up, d(hidden), d(weight), values, d(nw), probs, mean, logits, rstd, 0.9))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_triton_nan_row_and_non_contiguous():
    hidden, weight, values, nw = make_inputs(5, 32, 9, device=DEVICE)
    big = torch.zeros(5, 64, device=DEVICE)
    big[:, ::2] = hidden
    big[3, 10] = float("nan")
    probs, mean, var = score_head(big[:, ::2], weight.T.contiguous().T, values, norm_weight=nw, backend="triton")
    assert probs[3].isnan().all() and mean[3].isnan() and var[3].isnan()
    keep = torch.tensor([0, 1, 2, 4], device=DEVICE)
    for got, want in zip((probs, mean, var), reference64(hidden, weight, values, nw)):
        assert_close(got[keep], want[keep], dtype=torch.float32)


def test_triton_rejects_what_it_cannot_run():
    hidden, weight, values, _ = make_inputs(2, 8, MAX_K + 1, device=DEVICE)
    with pytest.raises(InputError, match=f"K <= {MAX_K}"):
        score_head(hidden, weight, values, backend="triton")
    hidden, weight, values, _ = make_inputs(2, 8, 9, dtype=torch.float64, device=DEVICE)
    with pytest.raises(InputError, match="float64"):
        score_head(hidden, weight, values, backend="triton")


def test_triton_agrees_with_every_live_backend():
    hidden, weight, values, nw = make_inputs(9, 70, 10, device=DEVICE, requires_grad=True)
    up = upstream(9, 10, DEVICE)
    ours = score_head(hidden, weight, values, norm_weight=nw, temperature=0.8, backend="triton")
    our_grads = grads(ours, (hidden, weight, nw), up)
    for other in live_backends(DEVICE):
        theirs = score_head(hidden, weight, values, norm_weight=nw, temperature=0.8, backend=other)
        for a, b in zip(ours, theirs):
            assert_close(a, b, msg=f"triton vs {other}")
        for a, b in zip(our_grads, grads(theirs, (hidden, weight, nw), up)):
            assert_close(a, b, msg=f"triton vs {other} gradients")
