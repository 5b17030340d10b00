"""Prediction ensembles: HPA when several trained students' distributions are averaged.

    python bench/ensemble.py --data data/shapeworld/val default runs/a runs/b --json

Averaging helps only where the members' errors differ. If no subset beats the best member, the
members share their mistakes (the same failures unseen), and more of the same training will not
help: the representation has to change. Scores every (image, prompt) once per member.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zreward  # noqa: E402
from zreward.data import load_dataset  # noqa: E402
from zreward.distribution import ScoreDistribution  # noqa: E402
from zreward.eval.report import evaluate  # noqa: E402

REPORTED = ("hpa", "margin_hpa", "plcc", "nll")


class _Cached:
    """One member, each (images, prompts) batch scored once however many subsets use it."""

    def __init__(self, model):
        self.model, self.rubric, self.cache = model, model.rubric, {}

    def score(self, images, prompts, batch_size=32):
        key = tuple(zip(map(str, images), prompts))
        if key not in self.cache:
            self.cache[key] = self.model.score(images, prompts, batch_size=batch_size).detach().to("cpu", torch.float64)
        return self.cache[key]


class _Average:
    def __init__(self, members):
        self.members, self.rubric = members, members[0].rubric

    def score(self, images, prompts, batch_size=32):
        probs = [m.score(images, prompts, batch_size).probs for m in self.members]
        return ScoreDistribution(sum(probs) / len(probs), self.rubric)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="'default' or model directories")
    ap.add_argument("--data", required=True)
    ap.add_argument("--max-size", type=int, default=3, help="largest subset tried besides all members")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    data = load_dataset(args.data)
    members = {m: _Cached(zreward.load(None if m == "default" else m)) for m in dict.fromkeys(args.models)}
    sizes = sorted({*range(1, min(args.max_size, len(members)) + 1), len(members)})
    out = {}
    for r in sizes:
        for names in itertools.combinations(members, r):
            res = evaluate(_Average([members[n] for n in names]), data, progress=False)
            out[" + ".join(names)] = {k: round(res[k], 4) for k in REPORTED}
            if not args.json:
                print(f"{' + '.join(names):70s} " + "  ".join(f"{k} {out[' + '.join(names)][k]:.4f}" for k in REPORTED))
    if args.json:
        print(json.dumps({"data": args.data, "subsets": out}, indent=1))


if __name__ == "__main__":
    main()
