"""Simulated annotators, the pair preferences they give, and the noise ceiling.

Rater j's score for dimension d of item i (before snapping to the rubric's bins):

    rating_ijd = true_id + bias_jd + subjectivity_id + noise_ijd

- bias_jd ~ N(0, BIAS_SD): a rater's persistent leniency or severity, the same on every item;
- subjectivity_id ~ N(0, SUBJECTIVITY_SD * DIM_SUBJECTIVITY[d]), shared by all raters of item i:
  what makes an item look better or worse than its failures say (aesthetics is the most subjective);
- noise_ijd ~ N(0, NOISE_SD): independent per rating.

The constants are calibrated so that the noise ceiling (the HPA that the true overall scores reach
against the annotators' non-tie preferences over all same-prompt pairs) is about 0.90.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable

import numpy as np

from zreward.errors import InputError
from zreward.rubric import Rubric

BIAS_SD = 0.25
SUBJECTIVITY_SD = 0.25
NOISE_SD = 0.35
DIM_SUBJECTIVITY = {"alignment": 0.6, "fidelity": 0.9, "aesthetics": 1.5, "plausibility": 1.0}
TRUE_LOW, TRUE_HIGH = 1.0, 5.0  # the range true scores live on, mapped onto the rubric's range
_TIE_EPS = 1e-9


def to_rubric_scale(score: float, rubric: Rubric) -> float:
    return rubric.low + (score - TRUE_LOW) / (TRUE_HIGH - TRUE_LOW) * (rubric.high - rubric.low)


def overall(per_dim: dict[str, float], rubric: Rubric) -> float:
    """Rubric-weighted mean of per-dimension scores."""
    return float(sum(w * per_dim[n] for n, w in zip(rubric.names, rubric.weights, strict=True)))


class AnnotatorPanel:
    """`n` raters with persistent per-dimension biases (n, D), drawn once from `rng`."""

    def __init__(self, rubric: Rubric, n: int, rng: np.random.Generator):
        if n < 1:
            raise InputError(f"n_annotators must be at least 1, got {n}")
        self.rubric, self.n = rubric, n
        scale = (rubric.high - rubric.low) / (TRUE_HIGH - TRUE_LOW)
        self.scale = scale
        self.biases = rng.normal(0.0, BIAS_SD * scale, (n, rubric.num_dimensions))

    def rate(self, true: dict[str, float], rng: np.random.Generator) -> dict[str, list[float]]:
        """{dimension: n ratings on the rubric's grid} for one item with true scores (1..5 scale)."""
        out = {}
        for d, name in enumerate(self.rubric.names):
            t = to_rubric_scale(true[name], self.rubric)
            shared = rng.normal(0.0, SUBJECTIVITY_SD * DIM_SUBJECTIVITY.get(name, 1.0) * self.scale)
            noise = rng.normal(0.0, NOISE_SD * self.scale, self.n)
            out[name] = [self.rubric.snap(float(t + self.biases[j, d] + shared + noise[j])) for j in range(self.n)]
        return out

    def mean_overall(self, scores: dict[str, list[float]]) -> float:
        """Rubric-weighted mean over dimensions of the mean over raters."""
        return overall({k: sum(v) / len(v) for k, v in scores.items()}, self.rubric)


def preference(a: float, b: float) -> str:
    if abs(a - b) <= _TIE_EPS:
        return "tie"
    return "a" if a > b else "b"


def prompt_pairs(prompt: str, images: list[str], overalls: list[float]) -> list[dict]:
    """All pairs (i < j) of one prompt's images with the annotators' preference."""
    return [
        {"prompt": prompt, "image_a": images[i], "image_b": images[j], "preference": preference(overalls[i], overalls[j])}
        for i, j in itertools.combinations(range(len(images)), 2)
    ]


def noise_ceiling(points: Iterable[dict], pairs: Iterable[dict], rubric: Rubric | None = None) -> float:
    """HPA of the true overall scores (points' meta.true_scores, rubric-weighted) on the non-tie pairs.

    A pair whose true overall scores tie counts one half. NaN when no pair has a non-tie preference.
    """
    from zreward.rubric import default_rubric

    rubric = rubric or default_rubric()
    true = {}
    for p in points:
        try:
            true[p["image"]] = overall(p["meta"]["true_scores"], rubric)
        except KeyError as e:
            raise InputError(f"point {p.get('id', '?')}: no meta.true_scores entry {e}") from None
    hits, n = 0.0, 0
    for q in pairs:
        if q["preference"] == "tie":
            continue
        try:
            diff = true[q["image_a"]] - true[q["image_b"]]
        except KeyError as e:
            raise InputError(f"pair {q['image_a']} / {q['image_b']}: image {e} is not among the points") from None
        n += 1
        hits += 0.5 if abs(diff) <= _TIE_EPS else float((diff > 0) == (q["preference"] == "a"))
    return hits / n if n else math.nan
