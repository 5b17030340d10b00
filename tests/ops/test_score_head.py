"""The fused score head: the reference, the compiled extension (CPU, and CUDA where there is one) and the
dispatcher, against a float64 reference on fresh random inputs. Triton: test_triton_interpret.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from markers import requires_cuda, requires_ext
from score_head_cases import grads, live_backends, make_inputs, reference64, reference64_grads, upstream

from zreward.distribution import moments, softmax_probs
from zreward.errors import InputError
from zreward.ops import MAX_K, backend_status, resolve_backend, score_head, score_head_reference
from zreward.ops.score_head import score_head_reference_full
from zreward.testing import TOLERANCES, assert_close, has_cuda, has_ext

DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ext_device(device):
    if not has_ext(device):
        pytest.skip(f"zreward._C has no {device} kernels here")


# --- the reference --------------------------------------------------------------------------------
def test_reference_is_the_distribution_module_maths():
    hidden, weight, values, nw = make_inputs(7, 37, 9)
    probs, mean, var, logits, rstd = score_head_reference_full(hidden, weight, values, nw, 1e-6, 0.7)
    torch.testing.assert_close(probs, softmax_probs(logits, 0.7), atol=0, rtol=0)
    m, v = moments(probs, values)
    torch.testing.assert_close(mean, m, atol=0, rtol=0)
    torch.testing.assert_close(var, v, atol=0, rtol=0)
    x = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + 1e-6) * nw
    assert_close(logits, x @ weight.T)
    assert_close(rstd, torch.rsqrt(hidden.pow(2).mean(-1) + 1e-6))


def test_reference_matches_the_spec_formula_in_float64():
    hidden, weight, values, nw = make_inputs(5, 16, 9, dtype=torch.float64)
    probs, mean, var = score_head_reference(hidden, weight, values, norm_weight=nw)
    assert probs.dtype == torch.float64
    assert_close(probs.sum(-1), torch.ones(5, dtype=torch.float64))
    assert_close(var, probs @ values**2 - mean**2)


@pytest.mark.parametrize("norm", [True, False])
def test_reference_gradcheck(norm):
    hidden, weight, values, nw = make_inputs(3, 6, 5, dtype=torch.float64, norm=norm, requires_grad=True)
    fn = lambda x, w, *n: score_head_reference(x, w, values, norm_weight=n[0] if n else None, temperature=0.7)
    assert torch.autograd.gradcheck(fn, tuple(t for t in (hidden, weight, nw) if t is not None))


# --- the compiled extension -----------------------------------------------------------------------
@requires_ext
@pytest.mark.parametrize("norm", [True, False])
def test_ext_gradcheck_cpu(norm):
    hidden, weight, values, nw = make_inputs(3, 6, 5, dtype=torch.float64, norm=norm, requires_grad=True)
    fn = lambda x, w, *n: score_head(x, w, values, norm_weight=n[0] if n else None, temperature=0.7, backend="ext")
    assert torch.autograd.gradcheck(fn, tuple(t for t in (hidden, weight, nw) if t is not None))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 7, 123])
@pytest.mark.parametrize("h", [1, 37, 4095, 4096])
@pytest.mark.parametrize("k", [5, 9, 10])
def test_ext_matches_float64_reference(device, n, h, k):
    _ext_device(device)
    for norm in (True, False):
        inputs = make_inputs(n, h, k, norm=norm, seed=n * h + k, device=device)
        out = score_head(*inputs[:3], norm_weight=inputs[3], temperature=0.9, backend="ext")
        for got, want in zip(out, reference64(*inputs, temperature=0.9)):
            assert got.dtype == torch.float32
            assert_close(got, want, dtype=torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("h", [37, 4095])
def test_ext_dtypes_outputs_and_grads(device, dtype, h):
    _ext_device(device)
    if device == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA kernels take float32, bfloat16 and float16")
    n, k = 7, 9
    hidden, weight, values, nw = make_inputs(n, h, k, dtype=dtype, device=device, requires_grad=True)
    up = upstream(n, k, device)
    out = score_head(hidden, weight, values, norm_weight=nw, backend="ext")
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    want = reference64(hidden, weight, values, nw)
    for got, ref in zip(out, want):
        assert got.dtype == ct
        assert_close(got, ref, dtype=ct)  # computed in float32 from the rounded inputs
    # flash-attention's rule: at most 2x the error of PyTorch's own low-precision path in that dtype.
    naive = torch.softmax(((hidden.float() * torch.rsqrt(hidden.float().pow(2).mean(-1, keepdim=True) + 1e-6)
                            ).to(dtype) * nw) @ weight.T, -1, dtype=torch.float32)
    err, naive_err = (out[0].double() - want[0]).abs().max(), (naive.double() - want[0]).abs().max()
    assert err <= 2 * naive_err + TOLERANCES[ct][0], (err, naive_err)
    got_g = grads(out, (hidden, weight, nw), up)
    for got, ref, t in zip(got_g, reference64_grads(hidden, weight, values, nw, up), (hidden, weight, nw)):
        assert got.dtype == t.dtype
        assert_close(got, ref, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", [True, False])
def test_ext_grads_with_per_sample_upstream(device, norm):
    _ext_device(device)
    n, h, k = 123, 257, 10
    hidden, weight, values, nw = make_inputs(n, h, k, norm=norm, device=device, requires_grad=True)
    up = upstream(n, k, device)
    out = score_head(hidden, weight, values, norm_weight=nw, temperature=1.3, backend="ext")
    got = grads(out, (hidden, weight, nw), up)
    for g, ref in zip(got, reference64_grads(hidden, weight, values, nw, up, temperature=1.3)):
        assert_close(g, ref, dtype=torch.float32)


@requires_ext
def test_backward_uses_the_upstream_gradient_it_is_given():
    # One forward, two backwards with different per-sample weights: each must match its own reference
    # (a gradient precomputed in the forward under an assumed upstream would match at most one).
    hidden, weight, values, nw = make_inputs(9, 40, 9, requires_grad=True)
    probs, mean, var = score_head(hidden, weight, values, norm_weight=nw, backend="ext")
    for seed in (1, 2):
        w = torch.randn(9, generator=torch.Generator().manual_seed(seed))
        g = torch.autograd.grad((w * mean).sum() + (w * var).sum(), hidden, retain_graph=True)[0]
        up = (torch.zeros(9, 9), w, w)
        assert_close(g, reference64_grads(hidden, weight, values, nw, up)[0], dtype=torch.float32)


@requires_ext
@pytest.mark.parametrize("norm", [True, False])
def test_ext_opcheck(norm):
    hidden, weight, values, nw = make_inputs(5, 24, 9, norm=norm, requires_grad=True)
    fwd, bwd = torch.ops.zreward.score_head_fwd.default, torch.ops.zreward.score_head_bwd.default
    torch.library.opcheck(fwd, (hidden, weight, values, nw, 1e-6, 0.9))
    with torch.no_grad():
        probs, mean, _, logits, rstd = fwd(hidden, weight, values, nw, 1e-6, 0.9)
    d = lambda t: None if t is None else t.detach()
    torch.library.opcheck(bwd, (*upstream(5, 9), d(hidden), d(weight), values, d(nw), probs, mean, logits, rstd, 0.9))


@requires_ext
def test_ext_op_rejects_large_k_itself():
    hidden, weight, values, _ = make_inputs(2, 8, MAX_K + 1)
    with pytest.raises(RuntimeError, match=f"K={MAX_K + 1}"):
        torch.ops.zreward.score_head_fwd(hidden, weight, values, None, 1e-6, 1.0)


@requires_ext
def test_ext_traces_under_torch_compile():
    hidden, weight, values, nw = make_inputs(6, 32, 9, requires_grad=True)

    def loss(x, w, n):
        probs, mean, var = score_head(x, w, values, norm_weight=n, backend="ext")
        return (probs * torch.arange(9.0)).sum() + mean.sum() + var.sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(hidden, weight, nw), (hidden, weight, nw))
    want = torch.autograd.grad(loss(hidden, weight, nw), (hidden, weight, nw))
    for g, w in zip(got, want):
        assert_close(g, w)


# --- every live backend ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_live_backends_agree(device):
    hidden, weight, values, nw = make_inputs(33, 130, 9, device=device)
    names = live_backends(device)
    outs = {b: score_head(hidden, weight, values, norm_weight=nw, temperature=0.8, backend=b) for b in names}
    for b in names:
        for got, want in zip(outs[b], outs["reference"]):
            assert_close(got, want, msg=f"{b} vs reference")


@pytest.mark.parametrize("device", DEVICES)
def test_nan_row_stays_in_its_row(device):
    hidden, weight, values, nw = make_inputs(6, 48, 9, device=device)
    hidden[2, 5] = float("nan")
    ref = score_head_reference(hidden, weight, values, norm_weight=nw)
    for b in live_backends(device):
        probs, mean, var = score_head(hidden, weight, values, norm_weight=nw, backend=b)
        assert probs[2].isnan().all() and mean[2].isnan() and var[2].isnan(), b
        keep = torch.tensor([0, 1, 3, 4, 5], device=device)
        for got, want in zip((probs, mean, var), ref):
            assert torch.isfinite(got[keep]).all(), b
            assert_close(got[keep], want[keep], msg=b)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    hidden, weight, values, nw = make_inputs(7, 64, 9, device=device)
    big = torch.zeros(7, 128, device=device)
    big[:, ::2] = hidden
    weight_t = weight.T.contiguous().T  # (K, H) view with strides (1, K)
    nw_strided = torch.stack([nw, nw], 1)[:, 0]
    ref = score_head_reference(hidden, weight, values, norm_weight=nw)
    for b in live_backends(device):
        out = score_head(big[:, ::2], weight_t, values, norm_weight=nw_strided, backend=b)
        for got, want in zip(out, ref):
            assert_close(got, want, msg=b)


def test_leading_dims_and_empty_batch():
    hidden, weight, values, nw = make_inputs(12, 16, 9)
    probs, mean, var = score_head(hidden.view(3, 4, 16), weight, values, norm_weight=nw)
    assert probs.shape == (3, 4, 9) and mean.shape == (3, 4) and var.shape == (3, 4)
    assert_close(probs.reshape(12, 9), score_head_reference(hidden, weight, values, norm_weight=nw)[0])
    probs, mean, var = score_head(hidden[:0], weight, values, norm_weight=nw, backend="auto")
    assert probs.shape == (0, 9) and mean.shape == (0,)


# --- errors and dispatch --------------------------------------------------------------------------
def _bad(**change):
    hidden, weight, values, nw = make_inputs(4, 8, 9)
    args = dict(hidden=hidden, weight=weight, values=values, norm_weight=nw)
    args.update(change)
    return args


@pytest.mark.parametrize(
    "change, backend, words",
    [
        (dict(hidden=torch.ones(4, 8, dtype=torch.int64), weight=torch.ones(9, 8, dtype=torch.int64)), "auto",
         "hidden must be a floating-point"),
        (dict(weight=torch.randn(9, 8, dtype=torch.float64)), "auto", "weight dtype"),
        (dict(weight=torch.randn(9, 8, device="meta")), "auto", "weight is on meta"),
        (dict(norm_weight=torch.ones(8, device="meta")), "auto", "norm_weight is on meta"),
        (dict(weight=torch.randn(9, 7)), "auto", "hidden has H=8"),
        (dict(values=torch.ones(5)), "auto", "values has 5 bins"),
        (dict(norm_weight=torch.ones(9)), "auto", "norm_weight must be (8,)"),
        (dict(weight=torch.randn(MAX_K + 1, 8), values=torch.ones(MAX_K + 1)), "ext", f"K <= {MAX_K}"),
        (dict(), "cuda-kernels", "backend must be one of"),
    ],
)
def test_bad_inputs_raise_input_error(change, backend, words):
    args = _bad(**change)
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        score_head(args["hidden"], args["weight"], args["values"], norm_weight=args["norm_weight"], backend=backend)


def test_bad_temperature():
    args = _bad()
    with pytest.raises(InputError, match="temperature"):
        score_head(args["hidden"], args["weight"], args["values"], temperature=0.0)


def test_triton_on_cpu_without_interpreter_names_the_reason():
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the CPU interpreter is on in this process")
    args = _bad()
    with pytest.raises(InputError, match="triton"):
        score_head(args["hidden"], args["weight"], args["values"], backend="triton")


def test_auto_falls_back_to_the_reference_for_large_k():
    hidden, weight, values, nw = make_inputs(3, 8, MAX_K + 1)
    assert resolve_backend("auto", hidden, MAX_K + 1) == "reference"
    out = score_head(hidden, weight, values, norm_weight=nw)
    assert_close(out[0], score_head_reference(hidden, weight, values, norm_weight=nw)[0])


def test_backend_status_reports_every_backend():
    status = backend_status()
    json.dumps(status)
    assert status["reference"]["live"] and status["reference"]["why_not"] is None
    for name in ("triton", "ext"):
        assert status[name]["live"] == bool(status[name]["devices"])
        assert status[name]["live"] or status[name]["why_not"]
    assert status["auto"]["cpu"] == ("ext" if has_ext("cpu") else "reference")
    assert (status["auto"]["cuda"] is None) == (not has_cuda())


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **env})


def test_without_the_extension_dispatch_falls_back():
    code = (
        "import torch, json\nfrom zreward.ops import backend_status, score_head\n"
        "s = backend_status(); p = score_head(torch.randn(3, 8), torch.randn(9, 8), torch.ones(9))[0]\n"
        "print(json.dumps([s['ext']['live'], s['ext']['why_not'], s['auto']['cpu'], float(p.sum())]))"
    )
    res = _python(code, ZREWARD_NO_EXT="1")
    assert res.returncode == 0, res.stderr
    live, why, auto, total = json.loads(res.stdout.strip().splitlines()[-1])
    assert not live and "ZREWARD_NO_EXT" in why and auto == "reference" and abs(total - 3) < 1e-5


def test_missing_extension_warns_once():
    code = (
        "import sys, warnings, torch\nsys.modules['zreward._C'] = None\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from zreward.ops import backend_status, score_head\n"
        "    for _ in range(3): score_head(torch.randn(2, 8), torch.randn(9, 8), torch.ones(9))\n"
        "    assert not backend_status()['ext']['live']\n"
        "print(sum('zreward._C' in str(x.message) for x in w))"
    )
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "1"


def test_backend_env_overrides_auto(monkeypatch):
    from zreward.ops.score_head import BACKEND_ENV

    hidden, *_ = make_inputs(3, 8, 9)
    monkeypatch.setenv(BACKEND_ENV, "reference")
    assert resolve_backend("auto", hidden, 9) == "reference"
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(InputError, match=BACKEND_ENV):
        resolve_backend("auto", hidden, 9)
    monkeypatch.setenv(BACKEND_ENV, "auto")
    assert resolve_backend("auto", hidden, 9) in ("ext", "reference")
