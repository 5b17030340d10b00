"""Evaluation of a scorer on a preference dataset, and the report it writes.

`evaluate` scores every unique (image, prompt) of a dataset once and assembles the metrics of
zreward.eval.metrics into one JSON-ready dict; `write_report` writes it as metrics.json with a
reliability diagram of P(A > B) (reliability.png).

The scorer is anything with `.rubric` and `.score(images, prompts, batch_size=...) ->
ScoreDistribution` (an eager model or a compiled engine). The dataset needs only: `.rubric`,
`.points` (items with .image, .prompt), `.pairs` (items with .prompt, .image_a, .image_b,
.preference in "a"/"b"/"tie"), `.histograms() -> (probs (N, D, K), mask (N, D))`,
`.human_means() -> (N, D)` (NaN where missing) and `.human_overall() -> (N,)`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.eval import metrics as M
from zreward.io import atomic_file, atomic_write_text


def _score_all(scorer, keys: list[tuple[Path, str]], batch_size: int, progress: bool) -> ScoreDistribution:
    from tqdm.auto import tqdm

    parts = []
    starts = range(0, len(keys), batch_size)
    # disable=None: a bar on a terminal only (see zreward.scoring).
    for s in tqdm(starts, desc="scoring", unit="batch", disable=None if progress else True):
        chunk = keys[s : s + batch_size]
        dist = scorer.score([k[0] for k in chunk], [k[1] for k in chunk], batch_size=batch_size)
        if len(dist) != len(chunk):
            raise RuntimeError(f"scorer returned {len(dist)} distributions for {len(chunk)} images")
        parts.append(dist.detach().to("cpu", torch.float64))
    return ScoreDistribution.cat(parts)


def evaluate(scorer, dataset, batch_size: int = 32, progress: bool = True) -> dict:
    """Scores a dataset and returns every metric as plain floats / ints / lists (JSON-ready).

    Keys: hpa, n_pairs (non-tie pairs), n_tie_pairs, margin_hpa, n_margin_pairs, margin, plcc,
    srcc (overall means over points), nll, kl, emd (against annotator histograms), ece and
    reliability (the table of ece_pairwise), dimensions {name: {plcc, srcc, nll, emd, n}},
    n_points, n_images (unique image files), n_scored (unique (image, prompt) units scored). The human gap of a pair is |human_overall(A) - human_overall(B)| when
    both images are points (same prompt), NaN otherwise (the pair then counts for HPA only).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    rubric = scorer.rubric
    # The overall mean is a weighted mean: scorer and labels must agree on dimensions, bins and weights.
    rubric.check_same_scale(dataset.rubric, "scorer and dataset")
    points, pairs = list(dataset.points), list(dataset.pairs)
    if not points and not pairs:
        raise InputError("the dataset has neither points nor pairs to evaluate")

    # Each (image, prompt) is scored once, however many pairs it appears in.
    index: dict[tuple[Path, str], int] = {}
    keys = [(Path(p.image), p.prompt) for p in points]
    keys += [(Path(getattr(q, side)), q.prompt) for q in pairs for side in ("image_a", "image_b")]
    for k in keys:
        index.setdefault(k, len(index))
    scored = _score_all(scorer, list(index), batch_size, progress)
    probs, means, overall = scored.probs, scored.mean.numpy(), scored.overall_mean.numpy()

    out: dict = {"n_points": len(points), "n_images": len({k[0] for k in index}), "n_scored": len(index)}
    # --- pointwise: correlations and distribution quality -------------------------------------
    pt = [index[(Path(p.image), p.prompt)] for p in points]
    human_overall = np.asarray(dataset.human_overall(), dtype=np.float64) if points else np.zeros(0)
    out["plcc"], out["srcc"] = M.plcc(overall[pt], human_overall), M.srcc(overall[pt], human_overall)
    dims = {name: {"plcc": math.nan, "srcc": math.nan, "nll": math.nan, "emd": math.nan, "n": 0} for name in rubric.names}
    out.update(nll=math.nan, kl=math.nan, emd=math.nan, dimensions=dims)
    if points:
        target, mask = (np.asarray(x) for x in dataset.histograms())
        mask = mask.astype(bool)
        human = np.asarray(dataset.human_means(), dtype=np.float64)
        q = probs[pt].numpy()
        ce, kld = M.cross_entropy_entries(q, target), M.kl_entries(q, target)
        em = M.emd_entries(q, target, rubric.step)
        out.update(nll=M.masked_mean(ce, mask), kl=M.masked_mean(kld, mask), emd=M.masked_mean(em, mask))
        for d, name in enumerate(rubric.names):
            has = mask[:, d]
            dims[name] = {
                "plcc": M.plcc(means[pt, d][has], human[has, d]),
                "srcc": M.srcc(means[pt, d][has], human[has, d]),
                "nll": M.masked_mean(ce[:, d], has),
                "emd": M.masked_mean(em[:, d], has),
                "n": int(has.sum()),
            }

    # --- pairwise: accuracy, margin accuracy, calibration of P(A > B) -------------------------
    ia = [index[(Path(q.image_a), q.prompt)] for q in pairs]
    ib = [index[(Path(q.image_b), q.prompt)] for q in pairs]
    pref = [q.preference for q in pairs]
    # One definition of the human gap: the dataset's, over the dimensions both images have.
    gap = np.abs(dataset.pair_index()[3].numpy()) if pairs else np.zeros(0)
    out["hpa"], out["n_pairs"] = M.hpa(overall[ia], overall[ib], pref)
    out["n_tie_pairs"] = sum(p == "tie" for p in pref)
    out["margin"] = 0.5
    out["margin_hpa"], out["n_margin_pairs"] = M.margin_hpa(overall[ia], overall[ib], pref, gap, margin=0.5)
    if pairs:
        p_greater = scored[ia].overall_prob_greater(scored[ib]).numpy()
    else:
        p_greater = np.zeros(0)
    out["ece"], out["reliability"] = M.ece_pairwise(p_greater, [M.OUTCOME[p] for p in pref])
    return out


# --- the report ----------------------------------------------------------------------------------
def json_safe(x):
    """NaN / inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.generic, torch.Tensor)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def reliability_diagram(table: list[dict], path: str | os.PathLike, ece: float | None = None) -> Path:
    """Writes a reliability diagram PNG (observed frequency per confidence bin) atomically.

    table: rows {"lo", "hi", "confidence", "frequency", "count"} as ece_pairwise returns.
    """
    # The object-oriented Agg canvas leaves pyplot's global backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    rows = [r for r in table if r["count"] > 0]
    if rows:
        ax.bar([r["lo"] for r in rows], [r["frequency"] for r in rows], width=[r["hi"] - r["lo"] for r in rows],
               align="edge", edgecolor="black", alpha=0.7, label="observed frequency")
        ax.plot([r["confidence"] for r in rows], [r["frequency"] for r in rows], "o", color="C3", label="mean confidence")
        for r in rows:
            ax.text((r["lo"] + r["hi"]) / 2, min(r["frequency"] + 0.02, 0.97), str(r["count"]), ha="center", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center")
    title = "Reliability of P(A > B)"
    if ece is not None and math.isfinite(ece):
        title += f"  (ECE {ece:.3f})"
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(A > B)", ylabel="share of pairs humans preferred A", title=title)
    ax.legend(loc="upper left", fontsize=8)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_report(results: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Writes out_dir/metrics.json (NaN as null) and out_dir/reliability.png; returns their paths."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file; the report needs a folder (metrics.json, reliability.png)")
    written = {}
    if results.get("reliability") is not None:
        written["reliability"] = reliability_diagram(results["reliability"], out_dir / "reliability.png", results.get("ece"))
    written["metrics"] = out_dir / "metrics.json"
    atomic_write_text(written["metrics"], json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n")
    return written
