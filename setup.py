"""Builds the optional compiled extension zreward._C (metadata lives in pyproject.toml).

    pip install torch==2.13.0 && pip install --no-build-isolation -e ".[dev]"

Build isolation must stay off: the extension compiles against the torch already installed, and an
isolated build would download another one. What gets built:
  - torch with CUDA and nvcc found: the CPU and CUDA kernels (csrc/*.cpp + csrc/*.cu);
  - otherwise, with a C++ compiler: the CPU kernels only (one .cpp, -O3, OpenMP);
  - no compiler, no torch, a failed build, or ZREWARD_NO_EXT=1: nothing, and the install still
    succeeds; zreward.ops then runs Triton or the reference (zreward.ops.backend_status() says why).
ZREWARD_NO_CUDA=1 builds the CPU kernels only even where CUDA is available.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _note(msg: str) -> None:
    print(f"zreward setup: {msg}", file=sys.stderr)


def _extensions():
    """(ext_modules, build_ext class): the extension to build, or none and the plain command."""
    if _flag("ZREWARD_NO_EXT"):
        _note("ZREWARD_NO_EXT is set: skipping the compiled extension")
        return [], build_ext
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except Exception as exc:  # no torch in this environment: install pure Python
        _note(f"torch is not importable ({exc}); skipping the compiled extension")
        return [], build_ext

    class OptionalBuildExtension(BuildExtension):
        """BuildExtension that warns instead of failing the install when the compile fails."""

        def build_extensions(self):
            # Wraps them all: with CUDA, torch checks the compiler's version before any one is built.
            try:
                super().build_extensions()
            except Exception as exc:  # compiler missing or failing: the package works without it
                _note(f"building zreward._C failed, installing without it: {exc}")

    cxx = ["-O3"]
    link = []
    if sys.platform.startswith("linux"):
        # OpenMP both for `#pragma omp simd` and for at::parallel_for, which is inline OpenMP.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    csrc = "csrc"
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and not _flag("ZREWARD_NO_CUDA")
    if with_cuda:
        ext = CUDAExtension(
            "zreward._C",
            [f"{csrc}/score_head.cpp", f"{csrc}/score_head_cuda.cpp", f"{csrc}/score_head_kernels.cu"],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
            extra_link_args=link,
        )
        _note("building zreward._C with CPU and CUDA kernels")
    else:
        ext = CppExtension("zreward._C", [f"{csrc}/score_head.cpp"], extra_compile_args=cxx, extra_link_args=link)
        _note("building zreward._C with CPU kernels (torch has no CUDA or nvcc was not found)")
    return [ext], OptionalBuildExtension.with_options(use_ninja=True)


ext_modules, build_cls = _extensions()
setup(ext_modules=ext_modules, cmdclass={"build_ext": build_cls})
