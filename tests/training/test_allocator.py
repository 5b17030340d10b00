"""keep_freed_memory: on glibc, large blocks come from the heap (reused) instead of fresh mmaps."""

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
if sys.argv[1] == "apply":
    from zreward.training.allocator import keep_freed_memory
    assert keep_freed_memory()
before = libc.mallinfo2().hblks
block = libc.malloc(16 << 20)  # an activation-sized block
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_blocks(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt / mallinfo2 are Linux-only")
def test_large_blocks_come_from_the_heap():
    try:
        default = _mmapped_blocks("default")
    except subprocess.CalledProcessError as e:  # no glibc >= 2.33 (mallinfo2): nothing to check against
        pytest.skip(f"no glibc mallinfo2 here: {e.stderr.strip().splitlines()[-1]}")
    assert default == 1, "glibc's default serves a 16 MiB block with mmap"
    assert _mmapped_blocks("apply") == 0
