"""Packed vision attention, batched over images: a registered Hugging Face attention implementation.

The Qwen-VL vision towers pack every image of a batch into one (N, C) sequence, delimited by
`cu_seqlens`. With "sdpa" or "eager" they then loop in Python, one attention call per image (per
window, for Qwen2.5-VL): a training step of the 336-px default on 40 images made 160 calls per pass,
and on the CPU their backward was half the step. They hand `cu_seqlens` to implementations whose
name contains "flash" (the packed, variable-length API) instead; this one receives them and, when
every segment has the same length (one fixed resolution: what the student's preprocessing always
produces), reshapes the packed sequence to (images, heads, length, dim) for ONE
`scaled_dot_product_attention` call. Ragged segments keep the per-segment loop. The maths is the
same attention (parity and gradients in tests/models/test_vision_attention.py).

Only the vision tower uses it (`use_packed_vision_attention`); the language model keeps its own
implementation, and a model loaded with real flash attention keeps that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

# The name must contain "flash": that is how the vision towers decide to pass cu_seqlens.
PACKED_VISION_ATTENTION = "zreward_packed_flash_api"
# Implementations the vision tower may be switched from (they compute the same attention per segment).
REPLACEABLE = ("sdpa", "eager")


def packed_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None = None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, cu_seq_lens_q: torch.Tensor | None = None,
                     cu_seq_lens_k: torch.Tensor | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """query / key / value (1, heads, N, dim), segments cu_seq_lens_q -> (1, N, heads, dim), None."""
    if query.shape[0] != 1 or attention_mask is not None or is_causal:
        raise ValueError("packed vision attention takes one packed, unmasked, non-causal sequence")
    if cu_seq_lens_k is not None and cu_seq_lens_k is not cu_seq_lens_q and not torch.equal(cu_seq_lens_k, cu_seq_lens_q):
        raise ValueError("packed vision attention is self-attention: query and key segments must match")
    _, heads, n, dim = query.shape  # the towers pass dropout 0 in eval mode
    lengths = (cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist() if cu_seq_lens_q is not None else [n]
    if len(set(lengths)) == 1:
        b, length = len(lengths), lengths[0]
        # (1, h, B*L, d) -> (B, h, L, d): the packed order is image-major, so this is a view.
        q, k, v = (t.reshape(heads, b, length, dim).transpose(0, 1) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)
        return out.transpose(1, 2).reshape(1, n, heads, dim), None
    outs = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling).transpose(1, 2)
        for q, k, v in zip(*(torch.split(t, lengths, dim=2) for t in (query, key, value)))
    ]
    return torch.cat(outs, dim=1), None


AttentionInterface.register(PACKED_VISION_ATTENTION, packed_attention)


def use_packed_vision_attention(backbone) -> bool:
    """Switches the backbone's vision tower to packed_attention when it runs sdpa or eager; returns
    whether it did. The language model's implementation is untouched."""
    visual = getattr(getattr(backbone, "model", backbone), "visual", None)
    if visual is None:
        return False
    cfg = visual.config
    if cfg._attn_implementation not in REPLACEABLE:
        return cfg._attn_implementation == PACKED_VISION_ATTENTION
    cfg._attn_implementation = PACKED_VISION_ATTENTION
    return True
