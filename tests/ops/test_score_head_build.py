"""The extension's build: the CUDA kernels compile with nvcc alone, the CUDA binding compiles against
torch's headers without CUDA ones, and setup.py installs without the extension when it cannot build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch
from torch.utils.cpp_extension import include_paths

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")


def _nvcc():
    return shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc")
                                         if os.path.exists(p)), None)


def test_cuda_kernels_compile_with_nvcc(tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA kernels are compiled where the CUDA toolkit is installed")
    obj = tmp_path / "score_head_kernels.o"
    res = subprocess.run([nvcc, "-c", "-O3", "-std=c++17", "-arch=sm_90", os.path.join(CSRC, "score_head_kernels.cu"),
                          "-o", str(obj)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert obj.stat().st_size > 0


def test_cuda_binding_compiles_without_cuda_headers():
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    std = "-std=c++20" if tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 10) else "-std=c++17"
    includes = [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}", f"-I{CSRC}"]
    res = subprocess.run([cxx, "-fsyntax-only", std, *includes, os.path.join(CSRC, "score_head_cuda.cpp")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]


def _setup(tmp_path, **env):
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp",
         str(tmp_path / "tmp")],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )


def test_setup_skips_the_extension_when_asked(tmp_path):
    res = _setup(tmp_path, ZREWARD_NO_EXT="1")
    assert res.returncode == 0, res.stderr[-4000:]
    assert "ZREWARD_NO_EXT is set" in res.stderr
    assert not list(tmp_path.rglob("*.so"))


def test_setup_survives_a_missing_compiler(tmp_path):
    res = _setup(tmp_path, CXX="/nonexistent/c++", CC="/nonexistent/cc")
    assert res.returncode == 0, res.stderr[-4000:]
    assert "failed, installing without it" in res.stderr
    assert not list(tmp_path.rglob("*.so"))
