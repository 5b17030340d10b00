"""Where a model's ShapeWorld HPA is lost, per dimension: HPA and margin-HPA when one dimension's
predicted mean is swapped for ShapeWorld's true latent score ("fixed"), and when every dimension but
one is ("only this one predicted").

    python bench/dimension_headroom.py --data data/shapeworld/test                 # the embedded model
    python bench/dimension_headroom.py --model runs/student --data data/shapeworld/test --json

The "all true" row is the noise ceiling. A dimension whose "fixed" row gains most is the one to work
on. Reads the true scores from each point's `meta` (ShapeWorld writes it); pairs as `zreward eval`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zreward.data.shapeworld.annotators import to_rubric_scale  # noqa: E402
from zreward.eval import metrics as M  # noqa: E402


def headroom(model, data, batch_size: int = 64) -> dict:
    rubric, points = model.rubric, data.points
    if not points or any("meta" not in p.extra for p in points):
        raise SystemExit(f"error: {data.root}: every point needs ShapeWorld meta (true scores)")
    with torch.no_grad():
        pred = model.score([p.image for p in points], [p.prompt for p in points], batch_size=batch_size).mean
    pred = pred.double().numpy()
    true = np.array([[to_rubric_scale(p.extra["meta"]["true_scores"][n], rubric) for n in rubric.names] for p in points])
    w = np.asarray(rubric.weights, dtype=np.float64)
    row = {(str(p.image), p.prompt): i for i, p in enumerate(points)}
    ia = np.array([row[(str(q.image_a), q.prompt)] for q in data.pairs])
    ib = np.array([row[(str(q.image_b), q.prompt)] for q in data.pairs])
    pref = [q.preference for q in data.pairs]
    gap = np.abs(data.pair_index()[3].numpy())

    def accuracy(means: np.ndarray) -> dict:
        overall = means @ w
        return {"hpa": round(M.hpa(overall[ia], overall[ib], pref)[0], 4),
                "margin_hpa": round(M.margin_hpa(overall[ia], overall[ib], pref, gap)[0], 4)}

    out = {"model": accuracy(pred), "all_true": accuracy(true), "fixed": {}, "only_predicted": {}}
    for d, name in enumerate(rubric.names):
        fixed, only = pred.copy(), true.copy()
        fixed[:, d], only[:, d] = true[:, d], pred[:, d]
        out["fixed"][name], out["only_predicted"][name] = accuracy(fixed), accuracy(only)
    return out


def main(argv=None) -> int:
    from failure_kinds import model_and_split

    model, data, as_json = model_and_split(__doc__.split("\n")[0], argv)
    rep = headroom(model, data)
    if as_json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{'':34}{'HPA':>8}{'margin-HPA':>12}")
    print(f"{'model':34}{rep['model']['hpa']:8.4f}{rep['model']['margin_hpa']:12.4f}")
    print(f"{'all true (noise ceiling)':34}{rep['all_true']['hpa']:8.4f}{rep['all_true']['margin_hpa']:12.4f}")
    for key, label in (("fixed", "true {}"), ("only_predicted", "only {} predicted")):
        for name, r in rep[key].items():
            print(f"{label.format(name):34}{r['hpa']:8.4f}{r['margin_hpa']:12.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
