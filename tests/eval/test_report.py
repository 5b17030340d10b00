"""evaluate() with a real pixel-statistics scorer on a tiny on-disk dataset, and the report files."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zreward.data.dataset import Pair, Point, PreferenceDataset
from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.eval import ece_pairwise, evaluate, hpa, plcc, reliability_diagram, srcc, write_report
from zreward.images import load_image
from zreward.rubric import default_rubric, five_level_rubric


class PixelMeanScorer:
    """A real scorer: per-dimension distributions peaked at 1 + 4 * (channel-weighted pixel mean).

    Deterministic in the image alone, so batch composition cannot change a score.
    """

    def __init__(self, rubric):
        self.rubric = rubric
        self.calls: list[int] = []

    def score(self, images, prompts, batch_size=32):
        assert len(images) == len(prompts)
        self.calls.append(len(images))
        values = torch.tensor(self.rubric.values, dtype=torch.float32)
        rows = []
        for path in images:
            x = load_image(path)  # (3, H, W) in [0, 1]
            centres = torch.stack([x.mean(), x[0].mean(), x[1].mean(), x[2].mean()])[: self.rubric.num_dimensions]
            centres = self.rubric.low + (self.rubric.high - self.rubric.low) * centres
            rows.append(-((values - centres[:, None]) ** 2) / 0.5)  # (D, K) logits
        return ScoreDistribution.from_logits(torch.stack(rows), self.rubric)


def _png(path, rgb):
    Image.new("RGB", (16, 12), tuple(int(c) for c in rgb)).save(path)
    return path


@pytest.fixture
def data(tmp_path):
    """6 images under 2 prompts (one image shared by both), 5 points, 7 pairs (one tie, one unknown gap)."""
    shades = {"dark": 30, "dim": 90, "mid": 140, "bright": 200, "white": 250, "extra": 170}
    img = {k: _png(tmp_path / f"{k}.png", (v, v, v)) for k, v in shades.items()}
    all4 = lambda s: {d: s for d in ("alignment", "fidelity", "aesthetics", "plausibility")}
    points = [
        Point("p0", "a cat", img["dark"], all4([1.0, 1.5])),
        Point("p1", "a cat", img["mid"], all4([3.0, 3.5, 3.0])),
        Point("p2", "a cat", img["white"], {"alignment": [5.0], "fidelity": [4.5, 5.0]}),
        Point("p3", "a dog", img["dim"], all4([2.0])),
        Point("p4", "a dog", img["mid"], all4([3.0])),
    ]
    pairs = [
        Pair("a cat", img["mid"], img["dark"], "a"),  # model right, gap 1.917
        Pair("a cat", img["dark"], img["white"], "b"),  # right, gap 3.625
        Pair("a cat", img["white"], img["mid"], "b"),  # wrong, gap 1.708
        Pair("a dog", img["dim"], img["mid"], "b"),  # right, gap 1.0
        Pair("a dog", img["extra"], img["mid"], "tie"),  # human tie: out of HPA
        Pair("a dog", img["bright"], img["dim"], "a"),  # right; bright is no point: gap unknown
        Pair("a dog", img["extra"], img["bright"], "a"),  # wrong, gap unknown
    ]
    return PreferenceDataset(tmp_path, default_rubric(), points, pairs), img


def test_evaluate_matches_direct_metrics(data):
    ds, img = data
    scorer = PixelMeanScorer(ds.rubric)
    res = evaluate(scorer, ds, batch_size=3, progress=False)

    # 7 unique (image, prompt) units, each scored once, in batches of at most 3.
    assert sum(scorer.calls) == 7 and max(scorer.calls) == 3
    assert res["n_points"] == 5 and res["n_images"] == 6 and res["n_scored"] == 7
    assert res["n_pairs"] == 6 and res["n_tie_pairs"] == 1
    assert res["hpa"] == pytest.approx(4 / 6)
    assert res["n_margin_pairs"] == 4 and res["margin_hpa"] == pytest.approx(3 / 4)

    def dist(path, prompt):
        return PixelMeanScorer(ds.rubric).score([path], [prompt]).to(torch.float64)  # evaluate works in fp64

    pts = ScoreDistribution.cat([dist(p.image, p.prompt) for p in ds.points])
    human = ds.human_overall().numpy()
    assert res["plcc"] == pytest.approx(plcc(pts.overall_mean, human), abs=1e-9)
    assert res["srcc"] == pytest.approx(srcc(pts.overall_mean, human), abs=1e-9)
    da = ScoreDistribution.cat([dist(q.image_a, q.prompt) for q in ds.pairs])
    db = ScoreDistribution.cat([dist(q.image_b, q.prompt) for q in ds.pairs])
    assert (res["hpa"], res["n_pairs"]) == hpa(da, db, [q.preference for q in ds.pairs])
    outcome = [{"a": 1.0, "b": 0.0, "tie": 0.5}[q.preference] for q in ds.pairs]
    ece, table = ece_pairwise(da.overall_prob_greater(db), outcome)
    assert res["ece"] == pytest.approx(ece, abs=1e-6)
    assert [r["count"] for r in res["reliability"]] == [r["count"] for r in table]

    # Per-dimension: p2 lacks aesthetics and plausibility.
    assert [res["dimensions"][d]["n"] for d in ds.rubric.names] == [5, 5, 4, 4]
    q, (target, mask) = pts.probs.double(), ds.histograms()
    ce = -(target.double() * q.clamp_min(1e-12).log()).sum(-1)
    assert res["nll"] == pytest.approx(float(ce[mask].mean()), rel=1e-6)
    assert res["dimensions"]["aesthetics"]["nll"] == pytest.approx(float(ce[mask[:, 2], 2].mean()), rel=1e-6)
    assert res["kl"] <= res["nll"] and res["emd"] > 0
    assert res["dimensions"]["fidelity"]["plcc"] > 0.9  # brightness tracks the human scores


def test_evaluate_on_a_loaded_dataset_directory(data, tmp_path):
    """The same data written in the file format and read by load_dataset gives the same metrics."""
    from zreward.data.dataset import load_dataset

    ds, _ = data
    root = tmp_path  # the fixture's PNGs live here; paths in the files are relative to it
    rel = lambda path: Path(path).name
    with open(root / "points.jsonl", "w") as f:
        for p in ds.points:
            f.write(json.dumps({"id": p.id, "prompt": p.prompt, "image": rel(p.image), "scores": p.scores}) + "\n")
    with open(root / "pairs.jsonl", "w") as f:
        for q in ds.pairs:
            row = {"prompt": q.prompt, "image_a": rel(q.image_a), "image_b": rel(q.image_b), "preference": q.preference}
            f.write(json.dumps(row) + "\n")
    loaded = load_dataset(root)
    got = evaluate(PixelMeanScorer(loaded.rubric), loaded, progress=False)
    want = evaluate(PixelMeanScorer(ds.rubric), ds, progress=False)
    assert got["n_pairs"] == want["n_pairs"] == 6 and got["n_margin_pairs"] == want["n_margin_pairs"]
    for key in ("hpa", "margin_hpa", "plcc", "srcc", "nll", "kl", "emd", "ece"):
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    for name in ds.rubric.names:
        for key, value in want["dimensions"][name].items():
            assert got["dimensions"][name][key] == pytest.approx(value, abs=1e-9, nan_ok=True), (name, key)


def test_evaluate_is_batch_invariant_and_rejects_mismatched_rubric(data):
    ds, _ = data
    one = evaluate(PixelMeanScorer(ds.rubric), ds, batch_size=1, progress=False)
    many = evaluate(PixelMeanScorer(ds.rubric), ds, batch_size=64, progress=False)
    for key in ("hpa", "margin_hpa", "plcc", "srcc", "nll", "kl", "emd", "ece"):
        assert one[key] == pytest.approx(many[key], abs=1e-9), key
    with pytest.raises(InputError, match="rubrics differ in values"):
        evaluate(PixelMeanScorer(five_level_rubric()), ds, progress=False)
    with pytest.raises(InputError, match="batch_size"):
        evaluate(PixelMeanScorer(ds.rubric), ds, batch_size=0, progress=False)


def test_evaluate_pairs_only_and_empty(data):
    ds, _ = data
    pairs_only = PreferenceDataset(ds.root, ds.rubric, [], ds.pairs)
    res = evaluate(PixelMeanScorer(ds.rubric), pairs_only, progress=False)
    assert res["n_points"] == 0 and res["n_pairs"] == 6 and res["hpa"] == pytest.approx(4 / 6)
    assert res["n_margin_pairs"] == 0 and math.isnan(res["margin_hpa"])
    assert math.isnan(res["plcc"]) and math.isnan(res["nll"]) and res["dimensions"]["alignment"]["n"] == 0
    with pytest.raises(InputError, match="neither points nor pairs"):
        evaluate(PixelMeanScorer(ds.rubric), PreferenceDataset(ds.root, ds.rubric, [], []), progress=False)


def test_write_report_files(data, tmp_path):
    ds, _ = data
    res = evaluate(PixelMeanScorer(ds.rubric), ds, progress=False)
    res["dimensions"]["alignment"]["srcc"] = float("nan")  # NaN must become null, not invalid JSON
    out = write_report(res, tmp_path / "report")
    metrics = json.loads(out["metrics"].read_text())
    assert metrics["hpa"] == pytest.approx(res["hpa"]) and metrics["dimensions"]["alignment"]["srcc"] is None
    assert len(metrics["reliability"]) == 10
    png = out["reliability"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["metrics.json", "reliability.png"]


def test_reliability_diagram_is_atomic(tmp_path):
    _, table = ece_pairwise(np.linspace(0, 1, 50), (np.linspace(0, 1, 50) > 0.5).astype(float))
    path = reliability_diagram(table, tmp_path / "rel.png", ece=0.1)
    before = path.read_bytes()
    with pytest.raises(KeyError):  # a malformed table fails before anything replaces the file
        reliability_diagram([{"count": 3}], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rel.png"]
    reliability_diagram([], tmp_path / "empty.png")  # no pairs: still a valid figure
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"
