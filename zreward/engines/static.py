"""The export wrapper: a ZRewardModel at a fixed image grid as one static-shape graph.

Graph inputs (all computed on the host by `zreward.engines.host.HostInputs`):
    pixel_values   (B, P, F) float32   preprocessed patches (`preprocess_images`, the one definition)
    input_ids      (B, L)    int64     right-padded student template
    attention_mask (B, L)    int64     1 at real tokens
    position_ids   (B, 3, L) int64     3-D M-RoPE positions (the backbone's own `get_rope_index`)
    read_positions (B, D)    int64     where each dimension's distribution is read
Graph outputs:
    probs (B, D, K) float32, score_mean (B, D) float32, score_std (B, D) float32

Only what is data-dependent in the Hugging Face forward is re-expressed: vision attention is batched
per image (`StaticVisionTower`), image features enter the text by a gather instead of
`masked_scatter`, Qwen3-VL's deepstack features by `where` instead of boolean indexing, and the
causal + padding mask is built from `attention_mask` with static ops. The decoder layers, norms,
rotary module and score-head weights are the backbone's own.
"""

from __future__ import annotations

import torch
from torch import nn

from zreward.distribution import moments, softmax_probs
from zreward.engines.vision import StaticVisionTower
from zreward.errors import InputError

INPUT_NAMES = ("pixel_values", "input_ids", "attention_mask", "position_ids", "read_positions")
# Not "mean" / "std": the exporters name intermediate values after their aten ops.
OUTPUT_NAMES = ("probs", "score_mean", "score_std")
SUPPORTED = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")


def score_head(hidden: torch.Tensor, weight: torch.Tensor, values: torch.Tensor, temperature: float = 1.0):
    """hidden (N, H), weight (K, H), values (K,) -> probs (N, K), mean (N,), std (N,), all float32.

    The package's score-head op on its reference path (standard ops only, so every backend traces
    it); softmax always in float32.
    """
    try:
        from zreward.ops.score_head import score_head as op
    except ImportError:  # a build without the ops package: the same maths from zreward.distribution
        probs = softmax_probs(hidden @ weight.t(), temperature)
        mean, var = moments(probs, values.float())
    else:
        probs, mean, var = op(hidden, weight, values, temperature=temperature, backend="reference")
    return probs.float(), mean.float(), var.float().clamp_min(0).sqrt()


class StaticScorer(nn.Module):
    """ZRewardModel -> forward(*INPUT_NAMES) -> (probs (B, D, K), mean (B, D), std (B, D))."""

    def __init__(self, model):
        super().__init__()
        fam = model.family
        if fam.model_type not in SUPPORTED:
            raise InputError(f"unsupported backbone {fam.model_type!r} for export; supported: {list(SUPPORTED)}")
        base = model.backbone.model
        self.model_type = fam.model_type
        self.grid = model.image_size // fam.patch_size
        self.vision = StaticVisionTower(base.visual, fam.model_type, self.grid)
        self.lm = base.language_model
        types = list(getattr(self.lm.config, "layer_types", None) or ["full_attention"] * len(self.lm.layers))
        bad = sorted(set(types) - {"full_attention", "linear_attention"})
        if bad:
            raise InputError(f"{fam.model_type}: decoder layer types {bad} are not supported for export")
        self.layer_types = types
        self.image_token_id = int(model.backbone.config.image_token_id)
        self.temperature = float(model.temperature)
        self.register_buffer("head_weight", model.score_head_weight().detach().clone(), persistent=False)
        self.register_buffer("bin_values", model.bin_values.detach().float().clone(), persistent=False)
        self.patches = self.grid * self.grid
        self.features = 3 * fam.temporal_patch_size * fam.patch_size ** 2

    def forward(self, pixel_values, input_ids, attention_mask, position_ids, read_positions):
        image, deep = self.vision(pixel_values)  # (B, T, H), [(B, T, H)]
        hidden = self.lm.embed_tokens(input_ids)  # (B, L, H)
        is_image = input_ids == self.image_token_id  # (B, L)
        # Row b's k-th image token takes image b's k-th feature (what masked_scatter does, statically).
        slot = (is_image.long().cumsum(-1) - 1).clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        hidden = torch.where(is_image.unsqueeze(-1), image.to(hidden.dtype).gather(1, slot), hidden)
        deep = [d.to(hidden.dtype).gather(1, slot) for d in deep]

        length = input_ids.shape[1]
        valid = attention_mask.bool()
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        full_mask = causal[None, None] & valid[:, None, None, :]  # (B, 1, L, L), True = attend
        cos, sin = self.lm.rotary_emb(hidden, position_ids.transpose(0, 1))
        for i, layer in enumerate(self.lm.layers):
            mask = full_mask if self.layer_types[i] == "full_attention" else attention_mask
            hidden = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=None)
            if i < len(deep):
                hidden = torch.where(is_image.unsqueeze(-1), hidden + deep[i], hidden)
        hidden = self.lm.norm(hidden)

        b, d = read_positions.shape
        idx = read_positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        slots = hidden.gather(1, idx).reshape(b * d, -1)
        probs, mean, std = score_head(slots, self.head_weight.to(slots.dtype), self.bin_values, self.temperature)
        return probs.reshape(b, d, -1), mean.reshape(b, d), std.reshape(b, d)


def has_static_length(scorer: StaticScorer) -> bool:
    """Linear-attention decoders (Qwen3.5) unroll their chunked recurrence over the text length, so
    their graphs are traced at one fixed length (rows are right-padded to it on the host)."""
    return "linear_attention" in scorer.layer_types


def export_program(scorer: StaticScorer, example: dict, batch: tuple[int, int], length: tuple[int, int]):
    """torch.export of the scorer with a dynamic batch in [batch] and text length in [length]
    (static when `has_static_length`). example: a dict of INPUT_NAMES tensors whose batch is in the
    range and, when the range is not one value, at least 2 (torch.export specializes sizes 0 and 1)."""
    from torch.export import Dim

    # A range of one value is a static dimension (torch.export rejects Dims with min == max == 1).
    b = Dim.STATIC if batch[0] == batch[1] else Dim("batch", min=batch[0], max=batch[1])
    fixed = has_static_length(scorer) or length[0] == length[1]
    n = Dim.STATIC if fixed else Dim("length", min=length[0], max=length[1])
    shapes = {"pixel_values": {0: b}, "input_ids": {0: b, 1: n}, "attention_mask": {0: b, 1: n},
              "position_ids": {0: b, 2: n}, "read_positions": {0: b}}
    with torch.no_grad():
        return torch.export.export(scorer, (), {k: example[k] for k in INPUT_NAMES}, dynamic_shapes=shapes)


def reference_probs(model, inputs: dict) -> torch.Tensor:
    """probs (B, D, K) float32 from the Hugging Face forward of `model` (the eager path)."""
    with torch.no_grad():
        try:
            return model(**inputs).float()
        except ModuleNotFoundError as e:
            if e.name != "zreward.ops":
                raise
        hidden = model.slot_hidden(**inputs)
        b, d, h = hidden.shape
        probs, _, _ = score_head(hidden.reshape(b * d, h), model.score_head_weight(), model.bin_values,
                                 model.temperature)
        return probs.reshape(b, d, -1)
