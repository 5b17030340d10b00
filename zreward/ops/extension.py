"""Loads the optional compiled extension zreward._C (csrc/) and registers its ops' Python halves.

The .so is looked for once, on first use: missing or broken, one warning says so and the dispatcher
uses Triton or the reference instead. ZREWARD_NO_EXT=1 turns it off without a warning.
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch

_state: dict = {"loaded": None, "error": None, "path": None, "kernels": {}}


def load() -> bool:
    """Imports zreward._C once (registering the zreward::score_head_fwd/bwd ops); True if it loaded."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    if os.environ.get("ZREWARD_NO_EXT", "0") == "1":
        _state.update(loaded=False, error="disabled by ZREWARD_NO_EXT=1")
        return False
    try:
        module = importlib.import_module("zreward._C")
    except Exception as exc:  # not built, or built against another torch: fall back, say it once
        _state.update(loaded=False, error=f"{type(exc).__name__}: {exc}")
        warnings.warn(
            "zreward._C (the compiled score-head kernels) is not available; score_head uses Triton or the "
            f"reference instead ({_state['error']}). Build it with: pip install --no-build-isolation -e .",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    from zreward.ops.registration import register_fused

    register_fused("zreward::score_head_fwd", "zreward::score_head_bwd", torch.ops.zreward.score_head_bwd.default)
    # Looked up once: the dispatcher reads this dict (torch.compile traces plain dict reads).
    kernels = {d: torch._C._dispatch_has_kernel_for_dispatch_key("zreward::score_head_fwd", key)
               for d, key in (("cpu", "CPU"), ("cuda", "CUDA"))}
    _state.update(loaded=True, error=None, path=getattr(module, "__file__", None), kernels=kernels)
    return True


def has_kernels(device_type: str) -> bool:
    """Whether the loaded extension has kernels for `device_type` ("cpu" or "cuda")."""
    return load() and _state["kernels"].get(device_type, False)


def unavailable_reason(device_type: str) -> str | None:
    """Why the ext backend cannot run on `device_type` (a sentence), or None when it can."""
    if not load():
        return f"the compiled extension zreward._C is not available ({_state['error']})"
    if not has_kernels(device_type):
        return f"zreward._C was built without {device_type} kernels"
    return None


def status() -> dict:
    """{"loaded", "path", "error", "cpu", "cuda"} for zreward.ops.backend_status()."""
    loaded = load()
    return {
        "loaded": loaded,
        "path": _state["path"],
        "error": _state["error"],
        "cpu": loaded and has_kernels("cpu"),
        "cuda": loaded and has_kernels("cuda"),
    }
