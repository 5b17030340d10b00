"""AOTInductor backend: torch.export + AOTInductor compiled into one `.pt2` package.

The package holds the compiled kernels and the weights for one device type (CPU here, CUDA when
exported on a GPU) and must be loaded by the torch version that compiled it. Calls into one loaded
package are serialized by a lock (its model container is not documented as re-entrant), so threads
share one package safely; for parallel CPU throughput run one process per core group instead.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from zreward.engines.static import INPUT_NAMES
from zreward.errors import InputError

PACKAGE_FILE = "model.pt2"


def unavailable_reason(device: str = "cpu") -> str | None:
    if not hasattr(torch._inductor, "aoti_compile_and_package"):
        return f"torch {torch.__version__} has no AOTInductor packaging (needs torch >= 2.6)"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "an AOTInductor CUDA package needs a CUDA GPU"
    return None


def compile_aoti(program, path: Path) -> None:
    """Compiles the exported program (on the device its tensors live on) into `path`."""
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))


class AotiRunner:
    """inputs (dict of INPUT_NAMES tensors) -> (probs, score_mean, score_std) CPU float32 tensors."""

    def __init__(self, path: Path, device: str = "cpu"):
        reason = unavailable_reason(device)
        if reason:
            raise InputError(f"{path}: {reason}")
        self.device = torch.device(device)
        try:
            self.model = torch._inductor.aoti_load_package(str(path))
        except Exception as e:  # the loader raises RuntimeError subclasses from C++
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: cannot load the AOTInductor package ({first})") from None
        self.lock = threading.Lock()

    def __call__(self, inputs: dict) -> tuple[torch.Tensor, ...]:
        feeds = {k: inputs[k].to(self.device) for k in INPUT_NAMES}
        with self.lock, torch.no_grad():
            outs = self.model(**feeds)
        return tuple(o.float().cpu() for o in outs)
