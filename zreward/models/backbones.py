"""Backbone families: what differs between Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5.

Everything family-specific lives here: image normalization constants, patch geometry, whether the
final RMSNorm scales by `weight` or `1 + weight`, and the tiny configs that tests and the embedded
default model are built from (the real configs' structure at a few hundred thousand parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

from zreward.errors import InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Family:
    model_type: str
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    # Qwen3.5's RMSNorm multiplies by (1 + weight); the fused head needs to know.
    norm_plus_one: bool = False

    @property
    def factor(self) -> int:
        """Image sides must be multiples of this (patch x spatial merge)."""
        return self.patch_size * self.merge_size


FAMILIES = {
    "qwen2_vl": Family("qwen2_vl", 14, 2, 2, CLIP_MEAN, CLIP_STD),
    "qwen2_5_vl": Family("qwen2_5_vl", 14, 2, 2, CLIP_MEAN, CLIP_STD),
    "qwen3_vl": Family("qwen3_vl", 16, 2, 2, HALF, HALF),
    "qwen3_5": Family("qwen3_5", 16, 2, 2, HALF, HALF, norm_plus_one=True),
}


def family_of(config) -> Family:
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise InputError(
            f"unsupported backbone {model_type!r}; supported: {sorted(FAMILIES)}"
        )
    fam = FAMILIES[model_type]
    vc = config.vision_config
    # Real checkpoints carry their own geometry; trust the config over the family default.
    return Family(
        fam.model_type,
        int(getattr(vc, "patch_size", fam.patch_size)),
        int(getattr(vc, "spatial_merge_size", fam.merge_size)),
        int(getattr(vc, "temporal_patch_size", fam.temporal_patch_size)),
        fam.image_mean,
        fam.image_std,
        fam.norm_plus_one,
    )


def tiny_config(model_type: str, vocab_size: int, special_ids: dict[str, int], hidden: int = 128,
                layers: int = 4, vision_depth: int = 4, vision_hidden: int = 64):
    """A tiny config with the real family's structure (same classes, same code paths).

    special_ids: image_token_id, video_token_id, vision_start_token_id, vision_end_token_id,
    pad_token_id, eos_token_id.
    """
    from transformers import AutoConfig

    if model_type not in FAMILIES:
        raise InputError(f"unsupported backbone {model_type!r}; supported: {sorted(FAMILIES)}")
    heads = max(2, hidden // 32)
    head_dim = hidden // heads
    half = head_dim // 2
    # M-RoPE splits the rotary half-dimension into (temporal, height, width) sections.
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=4096,
        rms_norm_eps=1e-6, pad_token_id=special_ids["pad_token_id"], eos_token_id=special_ids["eos_token_id"],
        bos_token_id=None, tie_word_embeddings=False,
    )
    vision = dict(depth=vision_depth, num_heads=max(2, vision_hidden // 32))
    fam = FAMILIES[model_type]
    vision["patch_size"] = fam.patch_size
    if model_type == "qwen2_vl":
        vision.update(embed_dim=vision_hidden, hidden_size=hidden, mlp_ratio=2)
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    elif model_type == "qwen2_5_vl":
        vision.update(hidden_size=vision_hidden, intermediate_size=vision_hidden * 2, out_hidden_size=hidden,
                      window_size=fam.factor * 2, fullatt_block_indexes=[vision_depth - 1])
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    elif model_type == "qwen3_vl":
        vision.update(hidden_size=vision_hidden, intermediate_size=vision_hidden * 2, out_hidden_size=hidden,
                      num_position_embeddings=64, deepstack_visual_indexes=[1, vision_depth - 1])
        text.update(head_dim=head_dim)
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section,
                                   "mrope_interleaved": True}
    elif model_type == "qwen3_5":
        vision.update(hidden_size=vision_hidden, intermediate_size=vision_hidden * 2, out_hidden_size=hidden,
                      num_position_embeddings=64)
        rot = head_dim // 4  # partial rotary factor 0.25, as the real config
        sec = [rot // 2 - 2 * (rot * 3 // 16), rot * 3 // 16, rot * 3 // 16]
        text.update(head_dim=head_dim, linear_key_head_dim=head_dim, linear_value_head_dim=head_dim,
                    linear_num_key_heads=heads, linear_num_value_heads=heads, linear_conv_kernel_dim=4,
                    layer_types=["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(layers)])
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                                   "mrope_section": sec, "mrope_interleaved": True}
    cfg = AutoConfig.for_model(
        model_type, text_config=text, vision_config=vision,
        image_token_id=special_ids["image_token_id"], video_token_id=special_ids["video_token_id"],
        vision_start_token_id=special_ids["vision_start_token_id"],
        vision_end_token_id=special_ids["vision_end_token_id"], tie_word_embeddings=False,
    )
    return cfg
