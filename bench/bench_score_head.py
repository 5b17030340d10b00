"""Benchmark of the fused score head against the transformers way, provider by provider.

Providers: "transformers" (final RMSNorm as Qwen's, lm_head over the full vocabulary (N, V), the K
score columns picked, softmax, moments), "reference", "triton", "ext" (zreward.ops backends), and
which one "auto" picks. Shapes are Qwen's: H in 2048 / 3584 / 4096 / 5120, V = 151936 / 248320,
K = 9 score tokens, N = 4 / 64 / 1024 score slots. Modes: forward, and forward + backward (upstream
gradients on probs, mean and var; hidden and the norm weight trainable, the head weight too unless
--frozen-head). The fused providers take the (K, H) score rows as their weight, as a model holds them.

Per point: median ms with p10 / p90, GB/s over the bytes the provider must move at least (its
inputs read once, its outputs and the (N, V) logits of the transformers way written once), peak
memory beyond the inputs (method in the JSON), and speedup and memory ratio against transformers.

    python bench/bench_score_head.py --quick            # CPU goal point: N=64, H=3584, V=151936, fp32
    python bench/bench_score_head.py --device cuda      # the full grid, bf16 (bench/gpu_check.py)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utils import MEMORY_METHOD, ROOT, append_json, fmt_bytes, peak_memory, record_header, time_call  # noqa: E402

from zreward.distribution import moments  # noqa: E402
from zreward.ops import backend_status, resolve_backend, score_head  # noqa: E402
from zreward.ops.score_head import fused_support  # noqa: E402

HS = (2048, 3584, 4096, 5120)
VS = (151936, 248320)
NS = (4, 64, 1024)
K = 9
GOAL = {"device": "cpu", "n": 64, "h": 3584, "v": 151936, "k": K, "speedup": 100.0, "memory_ratio": 1000.0}
DEFAULT_OUT = ROOT / "bench" / "results" / "score_head.json"


def transformers_way(hidden, lm_head, token_ids, values, norm_weight, eps=1e-6, temperature=1.0):
    """What a transformers model does: Qwen's RMSNorm, lm_head over the full vocabulary, K columns."""
    x = hidden.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    x = norm_weight * x.to(hidden.dtype)
    logits = torch.nn.functional.linear(x, lm_head)  # (N, V)
    probs = torch.softmax(logits[:, token_ids].float() / temperature, dim=-1)
    return (probs, *moments(probs, values))


_HEADS: dict = {}


def _inputs(n, h, v, dtype, device, seed=0):
    """hidden (n, h), lm_head (v, h), token_ids (K,), weight (K, h) = lm_head[token_ids], norm_weight, values.

    Random numbers are drawn on the device itself (a (248320, 5120) head is 1.3G values), and the
    lm_head of the last (h, v) is kept for the next N.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    key = (h, v, dtype, device)
    if key not in _HEADS:
        _HEADS.clear()
        _HEADS[key] = (torch.randn(v, h, generator=g, device=device) * h**-0.5).to(dtype)
    lm_head = _HEADS[key]
    hidden = torch.randn(n, h, generator=g, device=device).to(dtype)
    token_ids = torch.randperm(v, generator=g, device=device)[:K]
    weight = lm_head[token_ids].clone()
    norm_weight = (1 + 0.1 * torch.randn(h, generator=g, device=device)).to(dtype)
    values = torch.linspace(1.0, 5.0, K, device=device)
    return hidden, lm_head, token_ids, weight, norm_weight, values


def _bytes(provider, mode, n, h, v, itemsize, head_grad):
    out = n * (2 * K + 3) * 4
    if provider == "transformers":
        fwd = (n * h + v * h + h) * itemsize + n * v * itemsize * 2 + out
        bwd = (n * v + v * h) * itemsize + n * h * itemsize + ((n * h + v * h) * itemsize if head_grad else 0)
    else:
        fwd = (n * h + K * h + h) * itemsize + out
        bwd = (n * h + K * h) * itemsize + n * h * itemsize + (K * h * itemsize if head_grad else 0)
    return fwd + (bwd if mode == "fwd_bwd" else 0)


def _make_call(provider, mode, tensors, head_grad):
    hidden, lm_head, token_ids, weight, norm_weight, values = tensors
    train = mode == "fwd_bwd"
    hidden = hidden.detach().requires_grad_(train)
    norm_weight = norm_weight.detach().requires_grad_(train)
    if provider == "transformers":
        w = lm_head.detach().requires_grad_(train and head_grad)
        forward = lambda: transformers_way(hidden, w, token_ids, values, norm_weight)
    else:
        w = weight.detach().requires_grad_(train and head_grad)
        forward = lambda: score_head(hidden, w, values, norm_weight=norm_weight, backend=provider)
    if not train:
        return lambda: forward()
    leaves = [t for t in (hidden, w, norm_weight) if t.requires_grad]
    g = torch.Generator().manual_seed(1)
    n = hidden.shape[0]
    up = [t.to(hidden.device) for t in (torch.randn(n, K, generator=g), torch.randn(n, generator=g),
                                        torch.randn(n, generator=g))]  # per-sample upstream gradients
    return lambda: torch.autograd.grad(forward(), leaves, up)


def run_point(n, h, v, dtype, device, providers, modes, reps, head_grad, deadline):
    tensors = _inputs(n, h, v, dtype, device)
    rows = []
    auto = resolve_backend("auto", tensors[0], K)
    itemsize = torch.empty((), dtype=dtype).element_size()
    for mode in modes:
        base = None
        for provider in providers:
            if provider != "transformers" and provider != "reference" and fused_support(provider, tensors[0], K):
                continue
            if time.monotonic() > deadline:
                return rows
            call = _make_call(provider, mode, tensors, head_grad)
            budget = max(1.0, (deadline - time.monotonic()) / 20)
            t = time_call(call, device, reps=reps, warmup=2, max_seconds=budget)
            mem = peak_memory(call, device)
            row = {"n": n, "h": h, "v": v, "k": K, "dtype": str(dtype).replace("torch.", ""), "device": device,
                   "mode": mode, "provider": provider, "is_auto": provider == auto, **t,
                   "gbps": _bytes(provider, mode, n, h, v, itemsize, head_grad) / (t["median_ms"] * 1e6),
                   "peak_bytes": mem}
            if provider == "transformers":
                base = row
            if base is not None:
                row["speedup_vs_transformers"] = base["median_ms"] / t["median_ms"]
                row["memory_ratio_vs_transformers"] = base["peak_bytes"] / max(mem, 1)
            rows.append(row)
            print(f"{device} {row['dtype']} N={n:<5} H={h:<5} V={v:<6} {mode:<7} {provider:<12} "
                  f"{t['median_ms']:9.3f} ms [{t['p10_ms']:.3f}, {t['p90_ms']:.3f}]  {row['gbps']:8.1f} GB/s  "
                  f"peak {fmt_bytes(mem):>10}  x{row.get('speedup_vs_transformers', 1):.1f}"
                  f"{' (auto)' if row['is_auto'] else ''}", flush=True)
    del tensors
    return rows


def goal_summary(rows):
    """The goal point (CPU, N=64, H=3584, V=151936, forward): auto's speedup and memory ratio."""
    pick = lambda p: next((r for r in rows if r["device"] == GOAL["device"] and r["n"] == GOAL["n"]
                           and r["h"] == GOAL["h"] and r["v"] == GOAL["v"] and r["mode"] == "fwd" and p(r)), None)
    auto, base = pick(lambda r: r["is_auto"]), pick(lambda r: r["provider"] == "transformers")
    if auto is None or base is None:
        return None
    speedup = base["median_ms"] / auto["median_ms"]
    ratio = base["peak_bytes"] / max(auto["peak_bytes"], 1)
    return {**GOAL, "auto_backend": auto["provider"], "auto_ms": auto["median_ms"],
            "transformers_ms": base["median_ms"], "auto_peak_bytes": auto["peak_bytes"],
            "transformers_peak_bytes": base["peak_bytes"], "measured_speedup": speedup,
            "measured_memory_ratio": ratio,
            "met": bool(speedup >= GOAL["speedup"] and ratio >= GOAL["memory_ratio"])}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--quick", action="store_true", help="the CPU goal point only (N=64, H=3584, V=151936)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes, for smoke tests and dry runs")
    p.add_argument("--providers", default="transformers,reference,triton,ext")
    p.add_argument("--modes", default="fwd,fwd_bwd")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--frozen-head", action="store_true", help="no gradient for the head weight / lm_head")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds; points left are skipped")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON list to append the run to ('' to skip)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    if args.tiny:
        grid = [(4, 256, 4096), (33, 130, 2048)]
    elif args.quick:
        grid = [(GOAL["n"], GOAL["h"], GOAL["v"])]
    else:
        grid = [(n, h, v) for v in VS for h in HS for n in NS]  # N innermost: one lm_head per (H, V)
    deadline = time.monotonic() + (args.time_limit or 1e9)
    rows = []
    for n, h, v in grid:
        rows += run_point(n, h, v, dtype, args.device, args.providers.split(","), args.modes.split(","),
                          args.reps, not args.frozen_head, deadline)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    _HEADS.clear()
    record = record_header("score_head", vars(args))
    record.update(memory_method=MEMORY_METHOD[args.device], backends=backend_status(), results=rows,
                  goal=goal_summary(rows), complete=time.monotonic() <= deadline)
    if record["goal"]:
        g = record["goal"]
        print(f"goal (CPU N=64 H=3584 V=151936 fwd): auto={g['auto_backend']} speedup x{g['measured_speedup']:.0f} "
              f"(>= 100), memory ratio x{g['measured_memory_ratio']:.0f} (>= 1000): {'met' if g['met'] else 'NOT met'}")
    if args.out:
        append_json(args.out, record)
        print(f"appended to {args.out}")
    return record


if __name__ == "__main__":
    main()
