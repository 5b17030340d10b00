"""bench/utils.py: peak memory, timing statistics and the JSON results file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

_path = Path(__file__).resolve().parents[2] / "bench" / "utils.py"
_spec = importlib.util.spec_from_file_location("zreward_bench_utils", _path)
utils = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(utils)


def test_cpu_peak_memory_counts_what_is_live_at_once():
    def fn():
        a = torch.empty(1_000_000, dtype=torch.uint8)
        del a
        b = torch.empty(2_000_000, dtype=torch.uint8)
        c = torch.empty(500_000, dtype=torch.uint8)
        del c
        return b

    before = torch.empty(3_000_000, dtype=torch.uint8)  # allocated before the call: not counted
    assert utils.peak_memory(fn, "cpu") == 2_500_000
    del before


def test_time_call_statistics():
    t = utils.time_call(lambda: torch.ones(10).sum(), "cpu", reps=9, warmup=1)
    assert t["reps"] == 9
    assert 0 < t["min_ms"] <= t["p10_ms"] <= t["median_ms"] <= t["p90_ms"]


def test_append_json_keeps_earlier_runs(tmp_path):
    path = tmp_path / "results.json"
    utils.append_json(path, utils.record_header("unit", {"x": 1}))
    utils.append_json(path, {"bench": "unit", "n": 2})
    runs = json.loads(path.read_text())
    assert [r["bench"] for r in runs] == ["unit", "unit"]
    first = runs[0]
    assert first["versions"]["torch"] == torch.__version__ and first["machine"]["cpu_count"] > 0
    assert "commit" in first and first["date"].endswith("+00:00")
