"""Function-preserving widening of a trained Qwen2-VL reward model (Net2WiderNet by duplication).

A wider student trained from scratch sits on the plateau where the score slots predict the marginal
(bench/results/default_model.json); starting it from a trained narrow model skips that. Every width
(the LM's residual stream, attention heads, MLP units; the vision tower's likewise; the merger's hidden
layer) is multiplied by an integer k by repeating each feature vector k times (`[x; x; ...]`):

- a layer reading a repeated input gets its input columns repeated and divided by k, so it computes
  what it did; a layer writing a repeated output gets its rows repeated;
- RMSNorm and LayerNorm see the same mean and mean square over k copies, so they normalize alike;
- heads repeat whole (head_dim is unchanged, so rotary and attention scaling are too), and k/v heads
  repeat in the same order, so every repeated query head meets the copy of its own k/v head;
- the embedding repeats its columns without the 1/k (it is a lookup, not a sum).

So the widened model's scores equal the narrow one's (up to float rounding). Exact copies would stay
copies under training (they get equal gradients), so `noise` adds a small random perturbation to every
widened weight, relative to the weight's own scale; the scores then move by about that much.
"""

from __future__ import annotations

import copy

import torch

from zreward.errors import InputError


def _repeat(t: torch.Tensor, k: int, dim: int, blocks: int = 1, scale: bool = False) -> torch.Tensor:
    """Repeats the features along `dim` k times, within each of `blocks` equal blocks (qkv: 3, merger: 4);
    `scale` divides by k (for an input axis, so the sum over the repeated features is unchanged)."""
    shape = list(t.shape)
    size = shape[dim] // blocks
    x = t.reshape(*shape[:dim], blocks, size, *shape[dim + 1 :])
    x = torch.cat([x] * k, dim=dim + 1)
    x = x.reshape(*shape[:dim], blocks * size * k, *shape[dim + 1 :])
    return x / k if scale else x


# name suffix -> (output axis rule, input axis rule); a rule is None (unchanged) or (blocks, scale).
# Output axes never scale; input axes scale except the embedding's.
_DUP, _IN = (1, False), (1, True)
_RULES = {
    # language model
    "embed_tokens.weight": (None, (1, False)),
    "self_attn.q_proj.weight": (_DUP, _IN), "self_attn.q_proj.bias": (_DUP, None),
    "self_attn.k_proj.weight": (_DUP, _IN), "self_attn.k_proj.bias": (_DUP, None),
    "self_attn.v_proj.weight": (_DUP, _IN), "self_attn.v_proj.bias": (_DUP, None),
    "self_attn.o_proj.weight": (_DUP, _IN),
    "mlp.gate_proj.weight": (_DUP, _IN), "mlp.up_proj.weight": (_DUP, _IN), "mlp.down_proj.weight": (_DUP, _IN),
    "input_layernorm.weight": (_DUP, None), "post_attention_layernorm.weight": (_DUP, None),
    "language_model.norm.weight": (_DUP, None),
    "lm_head.weight": (None, _IN),
    # vision tower
    "patch_embed.proj.weight": (_DUP, None),
    "norm1.weight": (_DUP, None), "norm1.bias": (_DUP, None), "norm2.weight": (_DUP, None), "norm2.bias": (_DUP, None),
    "attn.qkv.weight": ((3, False), _IN), "attn.qkv.bias": ((3, False), None),
    "attn.proj.weight": (_DUP, _IN), "attn.proj.bias": (_DUP, None),
    "mlp.fc1.weight": (_DUP, _IN), "mlp.fc1.bias": (_DUP, None),
    "mlp.fc2.weight": (_DUP, _IN), "mlp.fc2.bias": (_DUP, None),
    "merger.ln_q.weight": (_DUP, None), "merger.ln_q.bias": (_DUP, None),
    "merger.mlp.2.weight": (_DUP, _IN), "merger.mlp.2.bias": (_DUP, None),
}


def _rule(name: str, merge_units: int):
    if name.endswith("merger.mlp.0.weight"):  # input: merge_units tokens of the vision width, side by side
        return _DUP, (merge_units, True)
    if name.endswith("merger.mlp.0.bias"):
        return _DUP, None
    for suffix, rule in _RULES.items():
        if name.endswith(suffix):
            return rule
    raise InputError(f"cannot widen parameter {name!r}: no rule for it (only qwen2_vl backbones widen)")


def widen_model(model, factor: int = 2, noise: float = 1e-2, seed: int = 0):
    """A ZRewardModel k = `factor` times as wide as `model` (Qwen2-VL backbones), scoring as it does.

    noise: std of the symmetry-breaking perturbation, as a fraction of each widened tensor's own std
    (0 keeps the function exact up to rounding).
    """
    from zreward.models.reward_model import ZRewardModel

    if not isinstance(factor, int) or factor < 2:
        raise InputError(f"widening factor must be an integer >= 2, got {factor!r}")
    config = model.backbone.config
    if config.model_type != "qwen2_vl":
        raise InputError(f"widening supports qwen2_vl backbones; this model is {config.model_type}")
    text, vision = config.text_config, config.vision_config
    if getattr(text, "head_dim", None) not in (None, text.hidden_size // text.num_attention_heads):
        raise InputError("widening needs head_dim = hidden_size / num_attention_heads")

    wide = copy.deepcopy(config)
    wt, wv = wide.text_config, wide.vision_config
    for cfg, names in ((wt, ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")),
                       (wv, ("embed_dim", "num_heads", "hidden_size"))):
        for n in names:
            setattr(cfg, n, getattr(cfg, n) * factor)
    merge_units = vision.spatial_merge_size ** 2
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in model.backbone.state_dict().items():
        out_rule, in_rule = _rule(name, merge_units)
        x = t.detach().float()
        if out_rule is not None:
            x = _repeat(x, factor, 0, *out_rule)
        if in_rule is not None:
            x = _repeat(x, factor, 1, *in_rule)
        if noise > 0 and x.dim() > 1:  # matrices only: norms and biases stay exact copies of each other
            x = x + noise * x.std() * torch.randn(x.shape, generator=gen)
        state[name] = x.to(t.dtype)

    # Built on plain sdpa (the packed vision attention is re-applied by ZRewardModel, as on loading).
    for cfg in (wide, wt, wv):
        cfg._attn_implementation = "sdpa"
    backbone = type(model.backbone)(wide)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("inv_freq") for k in missing):
        raise InputError(f"widened weights do not fit the widened model: missing {missing}, unexpected {unexpected}")
    backbone.to(next(model.backbone.parameters()).device)
    return ZRewardModel(backbone.eval(), model.tokenizer, model.rubric, model.image_size, model.template,
                        model.temperature)
