"""Builds the compiled extension zreward._C in place, for a source checkout installed without it:

    python -m zreward.ops.build

Runs `setup.py build_ext --inplace` against the torch already installed (no build isolation, so no
other torch is downloaded); what gets built follows setup.py (CPU kernels, plus CUDA ones when torch has
CUDA and nvcc is found).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    if not (root / "setup.py").exists() or not (root / "csrc").is_dir():
        print(f"zreward.ops.build: no source checkout at {root} (setup.py and csrc/ are needed); "
              "reinstall from source with: pip install --no-build-isolation -e .", file=sys.stderr)
        return 2
    rc = subprocess.call([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=root)
    if rc == 0:
        rc = subprocess.call([sys.executable, "-c", "import json, zreward.ops as o; "
                              "print(json.dumps(o.backend_status()['ext']))"], cwd=root)
    return rc


if __name__ == "__main__":
    sys.exit(main())
