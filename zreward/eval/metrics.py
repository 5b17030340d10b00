"""Evaluation metrics of a distributional reward model against human labels.

The definitions follow the paper's "Metrics" section:

- HPA: over human-labelled pairs with a non-tie preference, the share where the model's overall
  mean orders the pair as humans did (a model tie counts as half right).
- margin-HPA: HPA restricted to pairs whose absolute human mean gap is at least a margin (0.5).
- PLCC / SRCC between predicted and human mean scores.
- Distribution quality against annotator histograms: NLL (cross-entropy), KL and earth mover's
  distance, and the expected calibration error (ECE) of the pairwise probability P(A > B).

Inputs may be torch tensors, numpy arrays or lists; every metric returns plain Python floats.
Bad input (mismatched lengths, unknown preference labels, probabilities off [0, 1]) raises
InputError naming the argument.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError

PREFERENCES = ("a", "b", "tie")
OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5}
# Float32 overall means of identical distributions scored in different batches may differ in the
# last bits; differences this small are model ties rather than orderings.
TIE_TOL = 1e-6
# Human means are averages of half-point scores: a gap of exactly the margin must not be lost to
# rounding (3.1666... - 2.6666... is 0.4999999...).
MARGIN_TOL = 1e-9
PROB_FLOOR = 1e-12


def _array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """Any tensor / array / sequence as a float64 numpy array (ScoreDistribution: its overall mean)."""
    if isinstance(x, ScoreDistribution):
        x = x.overall_mean
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: not numeric ({e})") from None
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name}: expected {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _same_length(**arrays) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"length mismatch: {lengths}")
    return next(iter(lengths.values()))


def _preferences(preference: Sequence[str], name: str = "preference") -> np.ndarray:
    labels = [str(p) for p in preference]
    for i, p in enumerate(labels):
        if p not in OUTCOME:
            raise InputError(f"{name}[{i}]: {p!r} is not one of {PREFERENCES}")
    return np.asarray(labels, dtype=object)


# --- pairwise accuracy ---------------------------------------------------------------------------
def _ordering_credit(pred_a: np.ndarray, pred_b: np.ndarray, human_a_wins: np.ndarray) -> np.ndarray:
    diff = pred_a - pred_b
    right = np.where(human_a_wins, diff > TIE_TOL, diff < -TIE_TOL)
    return np.where(np.abs(diff) <= TIE_TOL, 0.5, right.astype(np.float64))


def hpa(pred_a, pred_b, preference: Sequence[str]) -> tuple[float, int]:
    """Human preference accuracy. Returns (accuracy, number of pairs used).

    pred_a, pred_b: (P,) predicted overall means (or ScoreDistributions of P images);
    preference: P labels in {"a", "b", "tie"}. Human ties are excluded; a model tie (|diff| <=
    TIE_TOL) earns 0.5. NaN accuracy when no non-tie pair is left.
    """
    a, b = _array(pred_a, "pred_a", 1), _array(pred_b, "pred_b", 1)
    pref = _preferences(preference)
    _same_length(pred_a=a, pred_b=b, preference=pref)
    keep = pref != "tie"
    n = int(keep.sum())
    if n == 0:
        return math.nan, 0
    credit = _ordering_credit(a[keep], b[keep], pref[keep] == "a")
    return float(credit.mean()), n


def margin_hpa(pred_a, pred_b, preference: Sequence[str], human_gap, margin: float = 0.5) -> tuple[float, int]:
    """HPA over the pairs whose absolute human mean gap is at least `margin`.

    human_gap: (P,) |human mean(A) - human mean(B)|; NaN (unknown gap) excludes the pair.
    Returns (accuracy, number of pairs used).
    """
    a, b = _array(pred_a, "pred_a", 1), _array(pred_b, "pred_b", 1)
    pref = _preferences(preference)
    gap = np.abs(_array(human_gap, "human_gap", 1))
    _same_length(pred_a=a, pred_b=b, preference=pref, human_gap=gap)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(gap) & (gap >= margin - MARGIN_TOL)
    return hpa(a[keep], b[keep], pref[keep])


# --- correlations --------------------------------------------------------------------------------
def _paired_finite(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _array(x, "x", 1), _array(y, "y", 1)
    _same_length(x=x, y=y)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, tied values sharing the average of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(x)]
    run = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[run]
    return ranks


def plcc(x, y) -> float:
    """Pearson correlation over the entries where both are finite; NaN if < 3 left or constant."""
    x, y = _paired_finite(x, y)
    if len(x) < 3:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    if denom == 0.0:
        return math.nan
    return float(np.clip((x @ y) / denom, -1.0, 1.0))


def srcc(x, y) -> float:
    """Spearman correlation (Pearson of average ranks, so ties are handled); NaN-safe as plcc."""
    x, y = _paired_finite(x, y)
    if len(x) < 3:
        return math.nan
    return plcc(average_ranks(x), average_ranks(y))


# --- distribution quality ------------------------------------------------------------------------
def _distributions(probs, target, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = _array(probs.probs if isinstance(probs, ScoreDistribution) else probs, "probs", 3)
    p = _array(target, "target", 3)
    if q.shape != p.shape:
        raise InputError(f"probs {q.shape} and target {p.shape} differ in shape")
    if mask is None:
        m = np.ones(q.shape[:2], dtype=bool)
    else:
        m = _array(mask, "mask", 2).astype(bool)
        if m.shape != q.shape[:2]:
            raise InputError(f"mask {m.shape} does not match probs {q.shape[:2]}")
    return q, p, m


def cross_entropy_entries(probs, target) -> np.ndarray:
    """(N, D) -sum_k p_hat_k log q_k, with q clamped at PROB_FLOOR. probs = q, target = p_hat: (N, D, K)."""
    q, p, _ = _distributions(probs, target, None)
    return -(p * np.log(np.maximum(q, PROB_FLOOR))).sum(-1)


def kl_entries(probs, target) -> np.ndarray:
    """(N, D) KL(p_hat || q) = sum_k p_hat_k (log p_hat_k - log q_k), 0 log 0 = 0."""
    q, p, _ = _distributions(probs, target, None)
    log_ratio = np.log(np.where(p > 0, p, 1.0)) - np.log(np.maximum(q, PROB_FLOOR))
    return (np.where(p > 0, p, 0.0) * log_ratio).sum(-1)


def emd_entries(probs, target, step: float) -> np.ndarray:
    """(N, D) 1-D earth mover's distance in score units: sum_k |CDF_q - CDF_p|_k * step."""
    q, p, _ = _distributions(probs, target, None)
    return np.abs(np.cumsum(q, -1) - np.cumsum(p, -1))[..., :-1].sum(-1) * step


def masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of values (N, D) over mask (N, D) True entries; NaN when none is present."""
    return float(values[mask].mean()) if mask.any() else math.nan


def nll(probs, target, mask=None) -> float:
    """Mean cross-entropy to the annotator histograms over present (N, D) entries (mask True)."""
    q, p, m = _distributions(probs, target, mask)
    return masked_mean(cross_entropy_entries(q, p), m)


def kl(probs, target, mask=None) -> float:
    """Mean KL(annotator histogram || predicted distribution) over present entries."""
    q, p, m = _distributions(probs, target, mask)
    return masked_mean(kl_entries(q, p), m)


def emd(probs, target, mask=None, step: float = 0.5) -> float:
    """Mean earth mover's distance (score units; step = bin spacing) over present entries."""
    q, p, m = _distributions(probs, target, mask)
    return masked_mean(emd_entries(q, p, step), m)


# --- calibration ---------------------------------------------------------------------------------
def ece_pairwise(prob_a_greater, outcome, n_bins: int = 10, ties: str = "exclude") -> tuple[float, list[dict]]:
    """Expected calibration error of P(A > B) against human outcomes, and the reliability table.

    prob_a_greater: (P,) model P(A > B) + 0.5 P(tie) (from ScoreDistribution.overall_prob_greater);
    outcome: (P,) 1 = A preferred, 0 = B preferred, 0.5 = human tie.
    ties: "exclude" drops human ties (the default: a tie is not an event P(A > B) predicts);
    "half" keeps them as an observed frequency of 0.5.
    Bins are equal-width on [0, 1] (the last one closed). ECE = sum_b n_b / n |conf_b - freq_b|.
    The table has one row per bin: {"lo", "hi", "confidence", "frequency", "count"}, with NaN
    confidence and frequency for empty bins. NaN ECE when no pair is left.
    """
    if n_bins < 1:
        raise InputError(f"n_bins must be positive, got {n_bins}")
    if ties not in ("exclude", "half"):
        raise InputError(f"ties must be 'exclude' or 'half', got {ties!r}")
    prob = _array(prob_a_greater, "prob_a_greater", 1)
    out = _array(outcome, "outcome", 1)
    _same_length(prob_a_greater=prob, outcome=out)
    bad = np.flatnonzero(~((prob >= 0) & (prob <= 1)))
    if len(bad):
        raise InputError(f"prob_a_greater[{bad[0]}]: {prob[bad[0]]} is not a probability")
    bad = np.flatnonzero(~np.isin(out, (0.0, 0.5, 1.0)))
    if len(bad):
        raise InputError(f"outcome[{bad[0]}]: {out[bad[0]]} is not 0, 0.5 or 1")
    if ties == "exclude":
        prob, out = prob[out != 0.5], out[out != 0.5]
    which = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    table, ece = [], 0.0
    for b in range(n_bins):
        sel = which == b
        count = int(sel.sum())
        conf = float(prob[sel].mean()) if count else math.nan
        freq = float(out[sel].mean()) if count else math.nan
        if count:
            ece += count / len(prob) * abs(conf - freq)
        table.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "confidence": conf, "frequency": freq, "count": count})
    return (float(ece) if len(prob) else math.nan), table
