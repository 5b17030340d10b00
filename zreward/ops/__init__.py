"""Fused ops: the score head (final RMSNorm + K score-token logits + softmax + moments).

    from zreward.ops import score_head
    probs, mean, var = score_head(hidden, weight, values, norm_weight=None, backend="auto")

Backends: "reference" (plain torch), "triton" (Triton kernels, CUDA or TRITON_INTERPRET=1), "ext" (the
compiled zreward._C: CPU, and CUDA when built with it), "auto". `backend_status()` says which are live.
ZREWARD_SCORE_HEAD_BACKEND=reference|triton|ext makes "auto" mean that backend in the whole process.
"""

from __future__ import annotations

import importlib.util

import torch

from zreward.ops import extension
from zreward.ops.score_head import (
    BACKENDS,
    MAX_K,
    ScoreHead,
    decompositions,
    resolve_backend,
    score_head,
    score_head_reference,
    triton_backend_reason,
)

# The compiled kernels are looked for once, here: missing, one warning, and dispatch falls back.
extension.load()

__all__ = [
    "BACKENDS",
    "MAX_K",
    "ScoreHead",
    "backend_status",
    "decompositions",
    "resolve_backend",
    "score_head",
    "score_head_reference",
]


def backend_status() -> dict:
    """Which score-head backends are live here and why the others are not (JSON-serialisable).

    {"reference": {...}, "triton": {...}, "ext": {...}, "auto": {"cpu": name, "cuda": name | None}}; each
    backend entry has "live" (bool), "devices" (where it runs) and "why_not" (None or a sentence).
    """
    cuda = torch.cuda.is_available()
    devices = ["cpu"] + (["cuda"] if cuda else [])
    ext = extension.status()
    ext_devices = [d for d in devices if ext[d]]
    triton_devices = [d for d in devices if triton_backend_reason(torch.device(d)) is None]
    triton_why = None if triton_devices else triton_backend_reason(torch.device("cuda" if cuda else "cpu"))
    ext_why = None if ext_devices else extension.unavailable_reason("cuda" if cuda else "cpu")
    triton_version = None
    if importlib.util.find_spec("triton") is not None:
        from importlib.metadata import version

        triton_version = version("triton")
    probe = {d: torch.empty(0, device=d) for d in devices}
    return {
        "reference": {"live": True, "devices": devices, "why_not": None},
        "triton": {"live": bool(triton_devices), "devices": triton_devices, "why_not": triton_why,
                   "version": triton_version},
        "ext": {"live": bool(ext_devices), "devices": ext_devices, "why_not": ext_why, "path": ext["path"]},
        "auto": {"cpu": resolve_backend("auto", probe["cpu"], 9),
                 "cuda": resolve_backend("auto", probe["cuda"], 9) if cuda else None},
        "max_k": MAX_K,
    }
