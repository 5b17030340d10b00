"""Score distributions: the maths of a rubric's K-bin distributions, in one place.

Every module (the model head, the ops' references, training losses, metrics, engines) imports the
functions here. All functions are torch, differentiable, and work on any leading shape.

probs: (..., K) float, rows sum to one; values: (K,) bin values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import torch

from zreward.rubric import Rubric


# --- functional maths ---------------------------------------------------------------------------
def softmax_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over the K score logits, always in float32 (bf16/fp16 softmax ties and drifts)."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def moments(probs: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mean = sum_k p_k v_k and var = sum_k p_k (v_k - mean)^2 (the centred form: no cancellation)."""
    values = values.to(probs)
    mean = probs @ values
    var = (probs * (values - mean.unsqueeze(-1)) ** 2).sum(-1)
    return mean, var


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats; 0 log 0 = 0, with a finite gradient there (xlogy's is -inf, which
    the softmax turns into NaN for a collapsed distribution)."""
    return -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(-1)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with 0 (and a zero gradient, not an infinite one) where x <= 0: std of a one-bin distribution."""
    positive = x > 0
    return torch.where(positive, x, torch.ones_like(x)).sqrt() * positive


def prob_greater(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(X > Y) + 0.5 P(X = Y) for independent X ~ p, Y ~ q over the same ascending bins. (..., K)."""
    k = p.shape[-1]
    above = torch.ones(k, k, device=p.device, dtype=p.dtype).tril(-1)  # [i, j] = 1 where i > j
    joint = p.unsqueeze(-1) * q.unsqueeze(-2)
    eye = torch.eye(k, device=p.device, dtype=p.dtype)
    return (joint * (above + 0.5 * eye)).sum((-1, -2))


@lru_cache(maxsize=32)
def _difference_support(values: tuple[float, ...], weights: tuple[float, ...]):
    """Support of sum_d w_d (X_d - Y_d) for independent per-dimension differences.

    The support depends only on the rubric, so it is built once and shared by every pair: each
    step convolves one more dimension's difference distribution and merges equal support points.
    `values` are in bin steps (0, 1, ..., K-1) and weights sum to one, so the merging and the tie
    tolerance below do not depend on the rubric's scale.
    Returns (support values, list of index maps, one per dimension after the first).
    """
    v = torch.tensor(values, dtype=torch.float64)
    diff = (v[:, None] - v[None, :]).flatten()  # K*K differences, index i*K + j
    support = weights[0] * diff
    support, first = torch.unique(torch.round(support * 1e9) / 1e9, return_inverse=True)
    maps = []
    for w in weights[1:]:
        combined = (support[:, None] + w * diff[None, :]).flatten()
        support, inv = torch.unique(torch.round(combined * 1e9) / 1e9, return_inverse=True)
        maps.append(inv)
    return support, first, maps


def overall_prob_greater(p: torch.Tensor, q: torch.Tensor, values, weights) -> torch.Tensor:
    """P(A > B) + 0.5 P(A = B) of the overall (weighted mean) score, exactly, for (..., D, K) inputs.

    Dimensions and images are independent. Exact on the discrete distributions (no normal
    approximation): the distribution of the weighted difference is built by merging support points.
    """
    step = float(values[1]) - float(values[0])  # equally spaced bins: differences are whole steps
    values = tuple(round((float(x) - float(values[0])) / step) for x in values)
    total = sum(float(w) for w in weights)
    weights = tuple(float(x) / total for x in weights)
    support, first, maps = _difference_support(values, weights)
    joint = (p.unsqueeze(-1) * q.unsqueeze(-2)).flatten(-2)  # (..., D, K*K), leading shapes broadcast
    lead = joint.shape[:-2]
    dist = joint.new_zeros(*lead, int(first.max()) + 1).index_add(-1, first.to(p.device), joint[..., 0, :])
    for d, inv in enumerate(maps, start=1):
        outer = (dist.unsqueeze(-1) * joint[..., d, :].unsqueeze(-2)).flatten(-2)
        dist = outer.new_zeros(*lead, int(inv.max()) + 1).index_add(-1, inv.to(p.device), outer)
    support = support.to(device=p.device, dtype=p.dtype)
    tol = 1e-7
    return (dist * ((support > tol).to(p.dtype) + 0.5 * (support.abs() <= tol).to(p.dtype))).sum(-1)


# --- the user-facing object ----------------------------------------------------------------------
@dataclass
class ScoreDistribution:
    """Per-image, per-dimension score distributions. probs: (B, D, K) float32, each row a distribution."""

    probs: torch.Tensor
    rubric: Rubric

    def __post_init__(self):
        if self.probs.dim() != 3 or self.probs.shape[1:] != (self.rubric.num_dimensions, self.rubric.num_bins):
            raise ValueError(
                f"probs must be (B, {self.rubric.num_dimensions}, {self.rubric.num_bins}), got {tuple(self.probs.shape)}"
            )
        if not self.probs.is_floating_point():
            raise ValueError(f"probs must be floating point, got {self.probs.dtype}")
        with torch.no_grad():
            p = self.probs.detach()
            # Rounding of the row sum: float32 softmax ~1e-7; an engine's fp16 / bf16 output more.
            tol = max(1e-3, 10 * torch.finfo(p.dtype).eps)
            if p.numel() and not (torch.isfinite(p).all() and (p >= 0).all()
                                  and ((p.float().sum(-1) - 1).abs() <= tol).all()):
                raise ValueError("probs must be finite, non-negative, and sum to one over the bins")

    @classmethod
    def _of_checked(cls, probs: torch.Tensor, rubric: Rubric) -> "ScoreDistribution":
        """A view of probs already checked (an index, a copy, a concatenation of checked ones): the
        value checks cost a device sync, so they run once, where probs enter."""
        out = object.__new__(cls)
        out.probs, out.rubric = probs, rubric
        return out

    @classmethod
    def from_logits(cls, logits: torch.Tensor, rubric: Rubric, temperature: float = 1.0) -> "ScoreDistribution":
        return cls(softmax_probs(logits, temperature), rubric)

    def __len__(self) -> int:
        return self.probs.shape[0]

    def __getitem__(self, idx) -> "ScoreDistribution":
        if isinstance(idx, tuple):  # d[:, 0] would read dimensions as images
            raise IndexError("a ScoreDistribution is indexed by image only (an index, slice, list or mask); "
                             "use .probs for dimensions and bins")
        p = self.probs[idx]
        return self._of_checked(p.unsqueeze(0) if p.dim() == 2 else p, self.rubric)

    def to(self, *args, **kwargs) -> "ScoreDistribution":
        return self._of_checked(self.probs.to(*args, **kwargs), self.rubric)

    def detach(self) -> "ScoreDistribution":
        return self._of_checked(self.probs.detach(), self.rubric)

    @staticmethod
    def cat(items: list["ScoreDistribution"]) -> "ScoreDistribution":
        return ScoreDistribution._of_checked(torch.cat([x.probs for x in items]), items[0].rubric)

    # --- moments ------------------------------------------------------------------------------
    @property
    def values(self) -> torch.Tensor:
        return torch.tensor(self.rubric.values, dtype=self.probs.dtype, device=self.probs.device)

    @property
    def weights(self) -> torch.Tensor:
        return torch.tensor(self.rubric.weights, dtype=self.probs.dtype, device=self.probs.device)

    @property
    def mean(self) -> torch.Tensor:
        """(B, D) expected score per dimension."""
        return moments(self.probs, self.values)[0]

    @property
    def var(self) -> torch.Tensor:
        return moments(self.probs, self.values)[1]

    @property
    def std(self) -> torch.Tensor:
        return safe_sqrt(self.var)

    @property
    def entropy(self) -> torch.Tensor:
        return entropy(self.probs)

    @property
    def overall_mean(self) -> torch.Tensor:
        """(B,) weighted mean of the dimension means."""
        return self.mean @ self.weights

    @property
    def overall_std(self) -> torch.Tensor:
        """(B,) std of the weighted mean, dimensions taken as independent."""
        return safe_sqrt(self.var.clamp_min(0) @ self.weights**2)

    def normalized(self) -> torch.Tensor:
        """(B,) overall mean mapped to [0, 1] (bounded, for weighting several rewards)."""
        return (self.overall_mean - self.rubric.low) / (self.rubric.high - self.rubric.low)

    def risk_adjusted(self, lam: float = 1.0) -> torch.Tensor:
        """(B,) overall mean - lam * overall std: a reward that penalizes uncertain judgments."""
        return self.overall_mean - lam * self.overall_std

    # --- pairs --------------------------------------------------------------------------------
    def _same_scale(self, other: "ScoreDistribution") -> None:
        if other.rubric is not self.rubric:
            self.rubric.check_same_scale(other.rubric, "the two score distributions")

    def prob_greater(self, other: "ScoreDistribution") -> torch.Tensor:
        """(B, D) P(self > other) + 0.5 P(tie), per dimension, images paired by index (a batch of one
        broadcasts: one image against many)."""
        self._same_scale(other)
        return prob_greater(self.probs, other.probs)

    def overall_prob_greater(self, other: "ScoreDistribution") -> torch.Tensor:
        """(B,) P(self > other) + 0.5 P(tie) of the overall score, exact on the discrete bins."""
        self._same_scale(other)
        return overall_prob_greater(self.probs, other.probs, self.rubric.values, self.rubric.weights)

    # --- export -------------------------------------------------------------------------------
    def to_dict(self) -> list[dict]:
        """One dict per image: {"overall": {"mean", "std"}, "dimensions": {name: {"mean", "std", "probs"}}}."""
        probs = self.probs.detach().double().cpu()
        dist = self._of_checked(probs, self.rubric)
        mean, std, om, os_ = dist.mean, dist.std, dist.overall_mean, dist.overall_std
        out = []
        for b in range(len(dist)):
            dims = {
                name: {"mean": float(mean[b, d]), "std": float(std[b, d]), "probs": [float(x) for x in probs[b, d]]}
                for d, name in enumerate(self.rubric.names)
            }
            out.append({"overall": {"mean": float(om[b]), "std": float(os_[b])}, "dimensions": dims})
        return out

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)
