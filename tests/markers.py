"""Skip markers in one place (import from tests): they skip with a reason, never pass silently."""

import pytest

from zreward.testing import has_cuda, has_ext, has_triton

requires_cuda = pytest.mark.skipif(not has_cuda(), reason="needs a CUDA GPU")
requires_triton = pytest.mark.skipif(not has_triton(), reason="needs triton (pip install 'zreward[triton]')")
requires_ext = pytest.mark.skipif(
    not has_ext(), reason="needs the compiled extension zreward._C (pip install --no-build-isolation -e .)"
)
slow = pytest.mark.slow
