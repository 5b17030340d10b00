"""Which ShapeWorld failures a model sees: per failure kind, the mean predicted score of the dimension
it hurts, on images with that one failure only, against clean images and the true score.

    python bench/failure_kinds.py --model zreward/assets/default --data data/shapeworld/test
    python bench/failure_kinds.py --data data/shapeworld/test --json      # the embedded model

A kind is seen when its predicted mean falls well below the clean images' mean, about as far as the
true score does ("seen" = predicted drop / true drop). Reads the ground truth from each point's
`meta` (ShapeWorld writes it), so it works on any ShapeWorld split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zreward import load  # noqa: E402
from zreward.data import load_dataset  # noqa: E402
from zreward.data.shapeworld.annotators import to_rubric_scale  # noqa: E402


def failure_kinds(model, data, batch_size: int = 64) -> dict:
    rubric = model.rubric
    keep = [p for p in data.points if "meta" in p.extra and len(p.extra["meta"]["failures"]) <= 1]
    if not keep:
        raise SystemExit(f"error: {data.root} has no ShapeWorld meta (clean or single-failure points)")
    with torch.no_grad():
        means = model.score([p.image for p in keep], [p.prompt for p in keep], batch_size=batch_size).mean
    dims = {name: i for i, name in enumerate(rubric.names)}
    clean = [i for i, p in enumerate(keep) if not p.extra["meta"]["failures"]]
    clean_pred = {d: float(means[clean, j].mean()) for d, j in dims.items()} if clean else {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(keep):
        if p.extra["meta"]["failures"]:
            groups[p.extra["meta"]["failures"][0]["kind"]].append(i)
    kinds = {}
    for kind, idx in sorted(groups.items()):
        dim = keep[idx[0]].extra["meta"]["failures"][0]["dimension"]
        pred = float(means[idx, dims[dim]].mean())
        true = sum(to_rubric_scale(keep[i].extra["meta"]["true_scores"][dim], rubric) for i in idx) / len(idx)
        drop_true = rubric.high - true
        seen = (clean_pred[dim] - pred) / drop_true if clean and drop_true > 0 else None
        kinds[kind] = {"dimension": dim, "n": len(idx), "predicted": round(pred, 3), "true": round(true, 3),
                       "seen": None if seen is None else round(seen, 2)}
    return {"clean": {d: round(v, 3) for d, v in clean_pred.items()}, "n_clean": len(clean), "kinds": kinds}


def model_and_split(description: str, argv=None):
    """The command line of the ShapeWorld diagnostics: (model, dataset, as_json)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded model)")
    p.add_argument("--data", required=True, type=Path, help="a ShapeWorld split, e.g. data/shapeworld/test")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    model = load(args.model)
    return model, load_dataset(args.data, model.rubric), args.json


def main(argv=None) -> int:
    model, data, as_json = model_and_split(__doc__.split("\n")[0], argv)
    res = failure_kinds(model, data)
    if as_json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"clean images ({res['n_clean']}): " + "  ".join(f"{d} {v:.2f}" for d, v in res["clean"].items()))
    print(f"{'kind':<22}{'dimension':<14}{'n':>5}{'predicted':>11}{'true':>7}{'seen':>7}")
    for kind, r in res["kinds"].items():
        seen = "-" if r["seen"] is None else f"{r['seen']:.2f}"
        print(f"{kind:<22}{r['dimension']:<14}{r['n']:>5}{r['predicted']:>11.2f}{r['true']:>7.2f}{seen:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
