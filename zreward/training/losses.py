"""Training losses on score distributions (shared by the SFT student and, later, RISD / GDSO)."""

from __future__ import annotations

import torch

from zreward.distribution import moments


def soft_label_ce(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy to annotator histograms, averaged over present (image, dimension) entries.

    probs, target: (B, D, K); mask: (B, D) bool, False where an image lacks that dimension.
    """
    ce = -(target * torch.log(probs.clamp_min(1e-12))).sum(-1)
    if mask is None:
        return ce.mean()
    mask = mask.to(ce.dtype)
    return (ce * mask).sum() / mask.sum().clamp_min(1.0)


def thurstone_pair_loss(probs: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, group: torch.Tensor,
                        human: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Thurstone (Case V) pair loss over all same-group pairs of a batch, as DeQA-Score.

    P(A > B) = Phi((mu_A - mu_B) / sqrt(var_A + var_B + eps)) on the overall score, trained
    against the human outcome (1, 0, or 0.5 for a tie). group: (B,) prompt ids; human: (B,) human
    overall means. Returns 0 when the batch holds no pair.
    """
    mean, var = moments(probs, values)
    mu, v = mean @ weights, var.clamp_min(0) @ weights**2
    same = (group[:, None] == group[None, :]).triu(1)
    ia, ib = same.nonzero(as_tuple=True)
    if ia.numel() == 0:
        return probs.new_zeros(())
    z = (mu[ia] - mu[ib]) / torch.sqrt(v[ia] + v[ib] + eps)
    p = 0.5 * (1 + torch.erf(z / 2**0.5))
    gap = human[ia] - human[ib]
    target = torch.where(gap.abs() < 1e-9, torch.full_like(gap, 0.5), (gap > 0).to(gap.dtype)).to(p.dtype)
    return torch.nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), target)


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Next-token CE at the positions of text_mask (B, L): the auxiliary text losses of the student
    (captioning: the prompt tokens, which follow the image; explaining: rationale tokens after the slots).

    logits: (N, V) at the positions where text_mask is True, each predicting the token after it.
    """
    targets = input_ids[:, 1:][text_mask[:, :-1]]
    return torch.nn.functional.cross_entropy(logits.float(), targets)
