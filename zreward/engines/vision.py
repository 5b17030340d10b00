"""The vision tower at a fixed image grid, batched over images: the export-safe re-expression.

The Hugging Face Qwen-VL vision towers pack all images into one (N, C) sequence and split attention
by `cu_seqlens.tolist()` (a data-dependent shape no exporter can trace). At a fixed resolution every
image has the same P patches, so attention becomes ordinary batched attention over (B, P):

- rotary tables, Qwen2.5-VL's window permutation and block mask, and Qwen3-VL's interpolated
  learned position embeddings depend only on the grid, so they are computed once on the host with
  the backbone's own modules and helpers (`transformers.vision_utils`) and held as constants;
- everything with weights (patch embedding, norms, qkv/proj, MLPs, mergers) is the HF submodule
  itself, called on static shapes.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from zreward.errors import InputError


def _rotary_fn(attn: nn.Module):
    # Each family ships its own apply_rotary_pos_emb_vision beside its attention class.
    return sys.modules[type(attn).__module__].apply_rotary_pos_emb_vision


class StaticVisionTower(nn.Module):
    """pixel_values (B, P, F) -> (image_embeds (B, T, H), deepstack [(B, T, H)] * S), T = P / merge^2."""

    def __init__(self, visual: nn.Module, model_type: str, grid: int):
        super().__init__()
        from transformers import vision_utils as vu

        self.visual = visual
        self.model_type = model_type
        cfg = visual.config
        merge = cfg.spatial_merge_size
        if grid % merge:
            raise InputError(f"vision grid {grid} is not a multiple of the spatial merge size {merge}")
        self.unit = merge * merge
        self.patches = grid * grid
        thw = torch.tensor([[1, grid, grid]])
        pos = vu.get_vision_position_ids(thw, merge)
        probe = visual.patch_embed.proj.weight
        cos, sin = visual.rotary_pos_emb(probe, pos.to(probe.device))
        self.window = None
        if model_type == "qwen2_5_vl":
            index, cu = vu.get_vision_window_index(thw, merge, cfg.window_size, cfg.patch_size)
            self.register_buffer("window_index", index.clone(), persistent=False)
            self.register_buffer("window_reverse", torch.argsort(index), persistent=False)
            cos = self._permute(cos.unsqueeze(0)).squeeze(0)
            sin = self._permute(sin.unsqueeze(0)).squeeze(0)
            # Block-diagonal mask over the permuted patches: True = attend (same window).
            seg = torch.bucketize(torch.arange(self.patches), cu[1:].long(), right=True)
            self.register_buffer("window_mask", seg[:, None] == seg[None, :], persistent=False)
            self.full_blocks = set(int(i) for i in cfg.fullatt_block_indexes)
        elif model_type in ("qwen3_vl", "qwen3_5"):
            idx, w = vu.get_vision_interpolation_indices_and_weights(
                thw, visual.num_grid_per_side, mode=visual.interpolation_mode,
                align_corners=visual.interpolation_align_corners, spatial_merge_size=merge)
            self.register_buffer("interp_indices", idx.clone(), persistent=False)
            self.register_buffer("interp_weights", w.clone(), persistent=False)
        elif model_type != "qwen2_vl":
            raise InputError(f"unsupported backbone {model_type!r} for export")
        self.register_buffer("rope_cos", cos.float().clone(), persistent=False)  # (P, hd)
        self.register_buffer("rope_sin", sin.float().clone(), persistent=False)
        proj = visual.patch_embed.proj
        self.register_buffer("zero_bias", proj.weight.new_zeros(proj.out_channels), persistent=False)
        self.deepstack = list(getattr(visual, "deepstack_visual_indexes", None) or [])

    def _permute(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, ...) -> the same patches in window order (merge units stay together)."""
        b = x.shape[0]
        x = x.reshape(b, self.patches // self.unit, self.unit, *x.shape[2:])
        return x[:, self.window_index].reshape(b, self.patches, *x.shape[3:])

    def _attention(self, attn: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, P, C) -> (B, P, C); the HF module's qkv / rotary / proj, attention batched per image."""
        b, p, c = x.shape
        q, k, v = attn.qkv(x).reshape(b, p, 3, attn.num_heads, -1).unbind(2)  # (B, P, h, hd)
        q, k = _rotary_fn(attn)(q, k, self.rope_cos, self.rope_sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
        return attn.proj(out.transpose(1, 2).reshape(b, p, c))

    def _patch_embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C*T*p*p) -> (N, E): the HF PatchEmbed's Conv3d, with an explicit zero bias when it has
        none (the ONNX exporter lowers a bias-free Conv3d wrongly unless its optimizer runs)."""
        pe = self.visual.patch_embed
        proj = pe.proj
        bias = proj.bias if proj.bias is not None else self.zero_bias
        x = x.view(-1, pe.in_channels, pe.temporal_patch_size, pe.patch_size, pe.patch_size)
        return F.conv3d(x, proj.weight, bias, stride=proj.stride).view(x.shape[0], -1)

    def forward(self, pixel_values: torch.Tensor):
        visual = self.visual
        b = pixel_values.shape[0]
        dtype = visual.patch_embed.proj.weight.dtype
        h = self._patch_embed(pixel_values.reshape(b * self.patches, -1).to(dtype))  # (B*P, C)
        if self.model_type in ("qwen3_vl", "qwen3_5"):
            pos = (visual.pos_embed(self.interp_indices) * self.interp_weights[:, :, None]).sum(1)
            h = (h.reshape(b, self.patches, -1) + pos.to(h.dtype)).reshape(b * self.patches, -1)
        h = h.reshape(b, self.patches, -1)
        if self.model_type == "qwen2_5_vl":
            h = self._permute(h)
        deep = []
        for i, blk in enumerate(visual.blocks):
            mask = None
            if self.model_type == "qwen2_5_vl" and i not in self.full_blocks:
                mask = self.window_mask
            h = h + self._attention(blk.attn, blk.norm1(h), mask)
            h = h + blk.mlp(blk.norm2(h))
            if i in self.deepstack:
                merger = visual.deepstack_merger_list[self.deepstack.index(i)]
                deep.append(merger(h.reshape(b * self.patches, -1)).reshape(b, self.patches // self.unit, -1))
        out = visual.merger(h.reshape(b * self.patches, -1)).reshape(b, self.patches // self.unit, -1)
        if self.model_type == "qwen2_5_vl":
            out = out[:, self.window_reverse]
        return out, deep
