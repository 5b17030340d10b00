"""bench/bench_train_step.py runs its settings side by side and records the comparison."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.markers import slow
from zreward.data.shapeworld import generate_shapeworld
from zreward.models import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator setting needs glibc")
def test_bench_train_step_records_every_setting(tmp_path):
    generate_shapeworld(tmp_path / "world", 40, seed=2, progress=False)
    data = tmp_path / "world" / "train"
    model = build_tiny_model("qwen2_vl", image_size=56, corpus=["a red circle"])
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "train_step.json"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_train_step.py"), "--data", str(data),
                          "--model", str(tmp_path / "model"), "--rounds", "1", "--steps", "2",
                          "--groups-per-batch", "2", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads(out.read_text())[-1]
    assert set(record["results"]) == {"hf_default", "keep_freed_memory", "keep_freed_memory+packed_attention",
                                      "cpu_default", "cpu_default+bf16_autocast"}
    for r in record["results"].values():
        assert r["timed_steps"] == 2 and r["median_step_seconds"] > 0 and 0 <= r["system_share_of_cpu"] <= 1
    assert record["results"]["hf_default"]["speedup"] == 1.0 and record["commit"] and record["machine"]["cpu_count"]


def test_bench_train_step_rejects_a_missing_dataset(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_train_step.py"), "--data", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode != 0 and "no points.jsonl" in res.stderr and "Traceback" not in res.stderr


def test_bench_train_step_runs_chosen_settings_beside_the_baseline(tmp_path):
    generate_shapeworld(tmp_path / "world", 40, seed=2, progress=False)
    model = build_tiny_model("qwen2_vl", image_size=56, corpus=["a red circle"])
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "train_step.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_train_step.py"), "--data", str(tmp_path / "world" / "train"),
           "--model", str(tmp_path / "model"), "--rounds", "1", "--steps", "1", "--groups-per-batch", "2",
           "--out", str(out)]
    res = subprocess.run(cmd + ["--settings", "cpu_default+bf16_autocast"], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(json.loads(out.read_text())[-1]["results"]) == {"hf_default", "cpu_default+bf16_autocast"}
    res = subprocess.run(cmd + ["--settings", "fastest"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode != 0 and "unknown settings ['fastest']" in res.stderr
