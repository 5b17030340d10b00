"""Metrics against hand-computed values and brute-force / scipy references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.eval import (
    average_ranks,
    ece_pairwise,
    emd,
    hpa,
    kl,
    margin_hpa,
    nll,
    plcc,
    srcc,
)
from zreward.rubric import default_rubric

VALUES = np.array(default_rubric().values)


def _random_probs(n, d, k, seed, sparse=False):
    g = np.random.default_rng(seed)
    p = g.random((n, d, k)) ** 3
    if sparse:  # annotator histograms have empty bins
        p[g.random((n, d, k)) < 0.6] = 0.0
        p[..., 0] += 1e-3 * (p.sum(-1) == 0)
    return p / p.sum(-1, keepdims=True)


# --- HPA -----------------------------------------------------------------------------------------
def test_hpa_hand_cases():
    a = [3.0, 2.0, 4.0, 1.0, 2.5]
    b = [2.0, 3.0, 4.0, 2.0, 1.0]
    pref = ["a", "a", "b", "b", "tie"]
    # right, wrong, model tie (0.5), right; the human tie is excluded.
    acc, n = hpa(a, b, pref)
    assert n == 4
    assert acc == pytest.approx((1 + 0 + 0.5 + 1) / 4)


def test_hpa_model_tie_tolerance_and_tensors():
    a = torch.tensor([3.0, 3.0])
    b = torch.tensor([3.0 + 1e-8, 2.0])
    acc, n = hpa(a, b, ["b", "b"])
    assert (acc, n) == (pytest.approx(0.25), 2)  # tie within TIE_TOL -> 0.5; 3 > 2 against "b" -> 0


def test_hpa_accepts_score_distributions():
    rubric = default_rubric()
    probs = torch.softmax(torch.randn(6, 4, 9), -1)
    dist = ScoreDistribution(probs, rubric)
    a, b = dist[[0, 1, 2]], dist[[3, 4, 5]]
    pref = ["a", "b", "a"]
    assert hpa(a, b, pref) == hpa(a.overall_mean, b.overall_mean, pref)


def test_hpa_all_ties_is_nan_and_bad_input():
    acc, n = hpa([1.0], [2.0], ["tie"])
    assert math.isnan(acc) and n == 0
    with pytest.raises(InputError, match=r"preference\[1\]"):
        hpa([1.0, 2.0], [2.0, 1.0], ["a", "A"])
    with pytest.raises(InputError, match="length mismatch"):
        hpa([1.0, 2.0], [2.0], ["a", "b"])


def test_margin_hpa_filters_by_gap():
    a = [3.0, 2.0, 4.0, 1.0]
    b = [2.0, 3.0, 1.0, 2.0]
    pref = ["a", "a", "a", "b"]
    # 3.1666.. - 2.6666.. is 0.4999999..: still counts at margin 0.5; NaN gaps are unknown.
    gap = [19 / 6 - 16 / 6, 0.25, float("nan"), -1.0]
    acc, n = margin_hpa(a, b, pref, gap, margin=0.5)
    assert n == 2 and acc == pytest.approx(1.0)  # pairs 0 and 3 (|gap| used), both right
    acc, n = margin_hpa(a, b, pref, gap, margin=0.2)
    assert n == 3 and acc == pytest.approx(2 / 3)


# --- correlations --------------------------------------------------------------------------------
def test_plcc_srcc_match_scipy_with_ties():
    g = np.random.default_rng(0)
    x = np.round(g.normal(size=123), 1)  # rounding makes many ties
    y = np.round(x + g.normal(size=123), 1)
    assert plcc(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert srcc(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_correlations_drop_nan_and_degenerate_cases():
    x = [1.0, 2.0, float("nan"), 4.0, 5.0]
    y = [2.0, 1.0, 7.0, float("nan"), 6.0]
    assert plcc(x, y) == pytest.approx(stats.pearsonr([1, 2, 5], [2, 1, 6])[0])
    assert srcc(x, y) == pytest.approx(0.5)
    assert math.isnan(plcc([1.0, 2.0], [1.0, 2.0]))  # fewer than 3
    assert math.isnan(srcc([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # constant
    assert plcc(torch.arange(5.0), torch.arange(5.0) * 2) == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=30))
def test_average_ranks_match_scipy(xs):
    x = np.array(xs, dtype=float)
    np.testing.assert_allclose(average_ranks(x), stats.rankdata(x, method="average"))


# --- distribution quality ------------------------------------------------------------------------
def test_nll_kl_brute_force_with_mask():
    q = _random_probs(7, 4, 9, 1)
    p = _random_probs(7, 4, 9, 2, sparse=True)
    mask = np.random.default_rng(3).random((7, 4)) < 0.7
    ce, kls = [], []
    for i in range(7):
        for d in range(4):
            if mask[i, d]:
                ce.append(-sum(p[i, d, k] * math.log(q[i, d, k]) for k in range(9)))
                kls.append(stats.entropy(p[i, d], q[i, d]))
    assert nll(q, p, mask) == pytest.approx(np.mean(ce), rel=1e-12)
    assert kl(q, p, mask) == pytest.approx(np.mean(kls), rel=1e-10)
    # cross-entropy = entropy of the histogram + KL, entry by entry
    ent = np.mean([stats.entropy(p[i, d]) for i in range(7) for d in range(4) if mask[i, d]])
    assert nll(q, p, mask) == pytest.approx(ent + kl(q, p, mask), rel=1e-10)


def test_nll_clamps_zero_probabilities_and_kl_of_self_is_zero():
    p = np.zeros((1, 1, 9))
    p[0, 0, 4] = 1.0
    q = np.zeros((1, 1, 9))
    q[0, 0, 0] = 1.0
    assert nll(q, p) == pytest.approx(-math.log(1e-12))
    assert kl(p, p) == pytest.approx(0.0, abs=1e-15)


def test_emd_matches_wasserstein_distance():
    q = _random_probs(5, 3, 9, 4)
    p = _random_probs(5, 3, 9, 5, sparse=True)
    ref = np.mean(
        [stats.wasserstein_distance(VALUES, VALUES, q[i, d], p[i, d]) for i in range(5) for d in range(3)]
    )
    assert emd(torch.tensor(q), torch.tensor(p), step=0.5) == pytest.approx(ref, rel=1e-10)


def test_distribution_metrics_bad_input_and_empty_mask():
    q = _random_probs(2, 4, 9, 6)
    with pytest.raises(InputError, match="differ in shape"):
        nll(q, q[:, :3])
    with pytest.raises(InputError, match="mask"):
        kl(q, q, np.ones((2, 3), bool))
    assert math.isnan(emd(q, q, np.zeros((2, 4), bool)))


# --- calibration ---------------------------------------------------------------------------------
def test_ece_hand_case_and_table():
    prob = [0.05, 0.15, 0.85, 0.95, 0.95, 1.0, 0.5]
    out = [0, 0, 1, 1, 0, 1, 0.5]
    ece, table = ece_pairwise(prob, out, n_bins=2)
    # tie excluded; bin [0, .5): conf .1, freq 0 (2 pairs); bin [.5, 1]: conf .9375, freq .75 (4)
    assert ece == pytest.approx(2 / 6 * 0.1 + 4 / 6 * (0.9375 - 0.75))
    assert [r["count"] for r in table] == [2, 4]
    assert table[1]["confidence"] == pytest.approx(0.9375) and table[1]["frequency"] == pytest.approx(0.75)
    ece_half, table_half = ece_pairwise(prob, out, n_bins=2, ties="half")
    assert table_half[1]["count"] == 5  # 0.5 falls in the upper bin
    assert ece_half == pytest.approx(2 / 7 * 0.1 + 5 / 7 * abs(0.85 - 0.7))


def test_ece_of_calibrated_outcomes_is_small_and_empty_bins_are_nan():
    g = np.random.default_rng(0)
    prob = g.random(20000)
    out = (g.random(20000) < prob).astype(float)
    ece, table = ece_pairwise(prob, out, n_bins=10)
    assert ece < 0.02
    assert sum(r["count"] for r in table) == 20000
    ece_bad, _ = ece_pairwise(prob, 1 - out, n_bins=10)  # anti-calibrated
    assert ece_bad > 0.4
    _, table = ece_pairwise([0.95], [1], n_bins=10)
    assert math.isnan(table[0]["confidence"]) and table[9]["count"] == 1


def test_ece_bad_input():
    with pytest.raises(InputError, match=r"prob_a_greater\[1\]"):
        ece_pairwise([0.2, 1.2], [0, 1])
    with pytest.raises(InputError, match=r"outcome\[0\]"):
        ece_pairwise([0.2], [0.3])
    with pytest.raises(InputError, match="ties"):
        ece_pairwise([0.2], [1], ties="drop")
    assert math.isnan(ece_pairwise([0.5], [0.5])[0])
