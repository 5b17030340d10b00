"""The ShapeWorld diagnostics in bench/ run on a fresh split; the headroom's "all true" row is the noise ceiling."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zreward.data.shapeworld import generate_shapeworld

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("sw") / "world"
    meta = generate_shapeworld(out, 160, seed=5, progress=False)
    return out / "test", meta["splits"]["test"]


def _run(script: str, data: Path) -> dict:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--data", str(data), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_dimension_headroom_ceiling_row_is_the_noise_ceiling(split):
    data, stats = split
    rep = _run("dimension_headroom.py", data)
    assert rep["all_true"]["hpa"] == pytest.approx(stats["noise_ceiling_hpa"], abs=1e-4)
    names = ["alignment", "fidelity", "aesthetics", "plausibility"]
    assert set(rep["fixed"]) == set(rep["only_predicted"]) == set(names)
    for r in [rep["model"], *rep["fixed"].values(), *rep["only_predicted"].values()]:
        assert 0.0 <= r["hpa"] <= 1.0 and 0.0 <= r["margin_hpa"] <= 1.0


def test_failure_kinds_reports_every_kind_it_finds(split):
    data, _ = split
    rep = _run("failure_kinds.py", data)
    assert rep["n_clean"] > 0 and set(rep["clean"]) == {"alignment", "fidelity", "aesthetics", "plausibility"}
    for r in rep["kinds"].values():
        assert r["n"] > 0 and 1.0 <= r["predicted"] <= 5.0


def test_ensemble_of_one_model_twice_is_that_model(split):
    """Two copies of one model: every subset's average is the model itself, as `zreward eval` scores it."""
    data, _ = split
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "ensemble.py"), "--data", str(data), "--json",
                          "default", str(ROOT / "zreward" / "assets" / "default")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    subsets = json.loads(res.stdout)["subsets"]
    assert len(subsets) == 3  # each alone, then both
    import zreward
    from zreward.data import load_dataset
    from zreward.eval import evaluate

    alone = evaluate(zreward.load(), load_dataset(data), progress=False)
    for r in subsets.values():
        assert r == {k: round(alone[k], 4) for k in ("hpa", "margin_hpa", "plcc", "nll")}
