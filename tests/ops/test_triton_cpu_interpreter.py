"""Runs test_triton_interpret.py on the CPU under TRITON_INTERPRET=1, in a fresh process (the variable
must be set before triton is imported, which this process may already have done)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from markers import requires_triton

from zreward.testing import has_cuda, triton_interpreted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@requires_triton
def test_triton_kernels_under_the_cpu_interpreter():
    if has_cuda() or triton_interpreted():
        pytest.skip("test_triton_interpret.py runs directly in this process (CUDA or TRITON_INTERPRET=1)")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/ops/test_triton_interpret.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=300,
    )
    tail = res.stdout[-4000:] + res.stderr[-2000:]
    assert res.returncode == 0, tail
    summary = res.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0 and "skipped" not in summary and "failed" not in summary, tail
