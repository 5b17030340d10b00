"""bench/gpu_check.py --dry-run: every step of the GPU check, tiny and on the CPU, writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_check_dry_run_writes_its_results(tmp_path):
    res = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path),
                          "--time-limit", "120"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["dry_run"] and summary["ok"]
    assert [s["name"] for s in summary["steps"]] == ["build", "backend_status", "tests", "bench"]
    assert summary["tests"]["passed"] > 0 and summary["tests"].get("failed", 0) == 0
    assert summary["backends"]["reference"]["live"]
    runs = json.loads((tmp_path / "score_head_gpu.json").read_text())
    record = runs[-1]
    for key in ("date", "commit", "machine", "versions", "memory_method", "results"):
        assert key in record
    assert {r["provider"] for r in record["results"]} >= {"transformers", "reference"}
    assert summary["bench"]["auto"], "auto's rows are summarized"
    assert (tmp_path / "gpu_tests.xml").stat().st_size > 0
    assert "===== bench" in (tmp_path / "gpu_check.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_tests.xml",
                                                           "score_head_gpu.json"]
