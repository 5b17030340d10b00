"""What this installation can do: versions and which backends are live (`zreward env`)."""

from __future__ import annotations

import importlib.metadata
import platform


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict:
    import torch

    versions = {"zreward": _version("zreward"), "python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("transformers", "triton", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt-cu13", "tensorrt",
                "peft", "trl", "accelerate", "diffusers"):
        versions[pkg] = _version(pkg)
    devices = {"cuda": torch.cuda.is_available(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
               "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    report = {"versions": versions, "devices": devices}
    try:
        from zreward.ops import backend_status

        report["score_head"] = backend_status()
    except ImportError as e:
        report["score_head"] = {"error": str(e)}
    try:
        from zreward.engines import engine_backends

        report["engines"] = engine_backends()
    except ImportError as e:
        report["engines"] = {"error": str(e)}
    return report
