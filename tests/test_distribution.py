"""Distribution maths against float64 brute-force references."""

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zreward import ScoreDistribution, default_rubric, five_level_rubric, make_rubric
from zreward.distribution import entropy, moments, overall_prob_greater, prob_greater, softmax_probs


def _probs(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=dtype) * 2, -1)


def test_moments_match_loops():
    r = default_rubric()
    p = _probs(5, 4, 9)
    v = np.array(r.values)
    mean, var = moments(p, torch.tensor(r.values, dtype=torch.float64))
    for b in range(5):
        for d in range(4):
            q = p[b, d].numpy()
            mu = (q * v).sum()
            assert mean[b, d].item() == pytest.approx(mu, abs=1e-12)
            assert var[b, d].item() == pytest.approx((q * (v - mu) ** 2).sum(), abs=1e-12)


def test_entropy_handles_zeros():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(entropy(p), torch.tensor([0.0, np.log(2)], dtype=torch.float64))


def test_softmax_is_float32_even_for_half_inputs():
    logits = torch.randn(3, 9).to(torch.bfloat16)
    p = softmax_probs(logits)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p.sum(-1), torch.ones(3))


def test_prob_greater_brute_force():
    p, q = _probs(3, 9, seed=1), _probs(3, 9, seed=2)
    got = prob_greater(p, q)
    for b in range(3):
        ref = sum(
            p[b, i] * q[b, j] * (1.0 if i > j else 0.5 if i == j else 0.0) for i in range(9) for j in range(9)
        )
        assert got[b].item() == pytest.approx(float(ref), abs=1e-12)
    # complementarity: P(X > Y) + P(Y > X) = 1 with ties split
    torch.testing.assert_close(got + prob_greater(q, p), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (2, 1, 0.5, 1), (0.3, 0.0, 1.7, 1)])
def test_overall_prob_greater_brute_force(weights):
    """Enumerate every joint outcome of 3 dimensions x 5 bins for both images."""
    dims = [(f"d{i}", "x", w) for i, w in enumerate(weights[:3])]
    r = make_rubric(dims, (1.0, 2.0, 3.0, 4.0, 5.0))
    p, q = _probs(2, 3, 5, seed=3), _probs(2, 3, 5, seed=4)
    got = overall_prob_greater(p, q, r.values, r.weights)
    v, w = np.array(r.values), np.array(r.weights)
    for b in range(2):
        ref = 0.0
        for xa in itertools.product(range(5), repeat=3):
            pa = np.prod([p[b, d, xa[d]].item() for d in range(3)])
            sa = (v[list(xa)] * w).sum()
            for xb in itertools.product(range(5), repeat=3):
                pb = np.prod([q[b, d, xb[d]].item() for d in range(3)])
                sb = (v[list(xb)] * w).sum()
                ref += pa * pb * (1.0 if sa - sb > 1e-9 else 0.5 if abs(sa - sb) <= 1e-9 else 0.0)
        assert got[b].item() == pytest.approx(ref, abs=1e-10)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_overall_prob_greater_properties(seed):
    r = default_rubric()
    p, q = _probs(2, 4, 9, seed=seed), _probs(2, 4, 9, seed=seed + 1)
    pq = overall_prob_greater(p, q, r.values, r.weights)
    qp = overall_prob_greater(q, p, r.values, r.weights)
    torch.testing.assert_close(pq + qp, torch.ones(2, dtype=torch.float64))
    self_cmp = overall_prob_greater(p, p, r.values, r.weights)
    torch.testing.assert_close(self_cmp, torch.full((2,), 0.5, dtype=torch.float64))


def test_overall_prob_greater_is_differentiable():
    r = default_rubric()
    logits = torch.randn(2, 4, 9, dtype=torch.float64, requires_grad=True)
    q = _probs(2, 4, 9, seed=5)
    f = lambda x: overall_prob_greater(torch.softmax(x, -1), q, r.values, r.weights)
    assert torch.autograd.gradcheck(f, (logits,))


def test_score_distribution_api():
    r = default_rubric()
    p = _probs(3, 4, 9, dtype=torch.float32)
    d = ScoreDistribution(p, r)
    assert d.mean.shape == (3, 4) and d.overall_mean.shape == (3,)
    torch.testing.assert_close(d.overall_mean, d.mean.mean(-1))
    torch.testing.assert_close(d.overall_std, (d.var.sum(-1) / 16).sqrt())
    assert ((d.normalized() >= 0) & (d.normalized() <= 1)).all()
    torch.testing.assert_close(d.risk_adjusted(2.0), d.overall_mean - 2 * d.overall_std)
    rows = json.loads(d.to_json())
    assert len(rows) == 3 and set(rows[0]["dimensions"]) == set(r.names)
    assert rows[1]["dimensions"]["fidelity"]["mean"] == pytest.approx(d.mean[1, 1].item(), abs=1e-6)
    assert d[1].probs.shape == (1, 4, 9)
    assert ScoreDistribution.cat([d[0], d[2]]).probs.shape == (2, 4, 9)
    with pytest.raises(ValueError, match="probs must be"):
        ScoreDistribution(p[:, :2], r)


def test_five_level_rubric_distribution():
    r = five_level_rubric()
    d = ScoreDistribution(_probs(2, 4, 5, dtype=torch.float32), r)
    assert ((d.mean >= 1) & (d.mean <= 5)).all()
    assert d.overall_prob_greater(d).allclose(torch.full((2,), 0.5))


def test_one_image_against_many_broadcasts_both_ways():
    d = ScoreDistribution(_probs(5, 4, 9, seed=3), default_rubric())
    one_vs_many, many_vs_one = d[0].overall_prob_greater(d), d.overall_prob_greater(d[0])
    assert one_vs_many.shape == many_vs_one.shape == (5,)
    torch.testing.assert_close(one_vs_many + many_vs_one, torch.ones(5, dtype=torch.float64))
    assert d[0].prob_greater(d).shape == (5, 4)


def test_pairs_need_one_scale():
    p = _probs(2, 4, 9, seed=4)
    a = ScoreDistribution(p, default_rubric())
    b = ScoreDistribution(p, make_rubric([(n, n, w) for n, w in zip(default_rubric().names, (1, 0, 0, 0))],
                                         default_rubric().values))
    with pytest.raises(ValueError, match="the two score distributions: the rubrics differ in weights"):
        a.overall_prob_greater(b)
    with pytest.raises(ValueError, match="differ in values"):
        a.prob_greater(ScoreDistribution(_probs(2, 4, 5, seed=5), five_level_rubric([(n, n) for n in default_rubric().names])))


def test_collapsed_distributions_have_finite_gradients():
    """A one-bin distribution (softmax saturated) has std 0 and entropy 0 with finite gradients: the
    risk-adjusted reward stays usable for training."""
    logits = torch.full((1, 4, 9), -200.0)
    logits[..., 3] = 0.0
    logits.requires_grad_(True)
    d = ScoreDistribution.from_logits(logits, default_rubric())
    with torch.no_grad():
        assert float(d.std.max()) == 0.0 and float(d.overall_std) == 0.0 and float(d.entropy.abs().max()) == 0.0
    (d.risk_adjusted(1.0).sum() + d.entropy.sum()).backward()
    assert torch.isfinite(logits.grad).all()


def test_tie_tolerance_follows_the_rubric_scale():
    """Bins 1e-8 apart: the top beats the bottom overall as on each dimension (no absolute tolerance)."""
    r = make_rubric([("q", "q")], (0.0, 1e-8, 2e-8))
    top, bottom = (ScoreDistribution(torch.eye(3, dtype=torch.float64)[[k]].unsqueeze(0), r) for k in (2, 0))
    assert float(top.overall_prob_greater(bottom)) == 1.0 == float(top.prob_greater(bottom))


def test_invalid_probs_and_dimension_indexing_are_refused():
    r = default_rubric()
    for bad, message in ((torch.ones(1, 4, 9), "sum to one"), (torch.full((1, 4, 9), float("nan")), "finite"),
                         (torch.zeros(1, 4, 9, dtype=torch.int64), "floating point")):
        with pytest.raises(ValueError, match=message):
            ScoreDistribution(bad, r)
    d = ScoreDistribution(_probs(4, 4, 9, seed=6), r)
    with pytest.raises(IndexError, match="indexed by image only"):
        d[:, 0]
    assert d[1:3].probs.shape == (2, 4, 9) and d[2].probs.shape == (1, 4, 9)
