"""The one tolerance table and the skip markers, shared by tests, benchmarks and export checks."""

from __future__ import annotations

import importlib.util
import os

import torch

# dtype -> (atol, rtol) for outputs compared against a float64 reference (or between backends).
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (1e-5, 1e-4),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}

# Engine parity (exported graph vs the PyTorch model, fp32): max |probs difference|.
ENGINE_PROBS_ATOL = 1e-4
# A whole model run in bfloat16 against the same model in fp32: max |probs difference| (the default
# model on the CPU measured 0.023 on random images; a table row above bounds single ops, not 8 layers).
BF16_MODEL_PROBS_ATOL = 5e-2
# A single image's scores must not depend on the batch it is in.
BATCH_INVARIANCE_ATOL = 1e-5


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, msg: str = ""):
    """torch.testing.assert_close with the table's tolerance for `dtype` (default: actual's dtype)."""
    atol, rtol = TOLERANCES[dtype or actual.dtype]
    torch.testing.assert_close(actual.to(expected.dtype), expected, atol=atol, rtol=rtol, msg=msg or None)


def has_cuda() -> bool:
    return torch.cuda.is_available()


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def has_ext(device_type: str = "cpu") -> bool:
    """Whether the compiled extension zreward._C is loaded with kernels for `device_type`."""
    from zreward.ops import extension

    return extension.has_kernels(device_type)


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"
