"""The packed vision attention against the vision tower's own per-image sdpa loop: outputs and
gradients on fresh random inputs, for every supported family, on one grid and on ragged grids."""

import pytest
import torch
from transformers import AttentionInterface

import zreward.models.vision_attention as va
from zreward.models import build_tiny_model
from zreward.testing import assert_close

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5"]


@pytest.fixture
def calls():
    """Counts calls of the registered implementation, so a comparison cannot pass by not using it."""
    count = [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return va.packed_attention(*args, **kwargs)

    AttentionInterface.register(va.PACKED_VISION_ATTENTION, counting)
    yield count
    AttentionInterface.register(va.PACKED_VISION_ATTENTION, va.packed_attention)


def _vision_pass(visual, pixels, grid_thw):
    """Output features, d(loss)/d(pixels) and d(loss)/d(qkv weight of the first block)."""
    x = pixels.clone().requires_grad_(True)
    out = visual(x, grid_thw=grid_thw)
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = feats if torch.is_tensor(feats) else feats[0]
    (feats * torch.linspace(-1, 1, feats.numel()).reshape(feats.shape)).sum().backward()
    qkv = visual.blocks[0].attn.qkv.weight
    grads = (x.grad.clone(), qkv.grad.clone())
    visual.zero_grad(set_to_none=True)
    return feats.detach(), *grads


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("grids", [[(8, 8)] * 3, [(8, 8), (4, 6), (6, 4)]], ids=["one_grid", "ragged"])
def test_packed_matches_the_per_image_loop(family, grids, calls):
    model = build_tiny_model(family, seed=1)
    visual = model.backbone.model.visual
    assert visual.config._attn_implementation == va.PACKED_VISION_ATTENTION
    assert model.backbone.config.text_config._attn_implementation == "sdpa"  # the language model keeps its own
    cfg = visual.config
    features = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2
    grid_thw = torch.tensor([[1, h, w] for h, w in grids])
    pixels = torch.randn(int(grid_thw.prod(-1).sum()), features, generator=torch.Generator().manual_seed(len(grids)))
    packed = _vision_pass(visual, pixels, grid_thw)
    assert calls[0] == cfg.depth  # every block went through it
    visual.config._attn_implementation = "sdpa"
    loop = _vision_pass(visual, pixels, grid_thw)
    for a, b in zip(packed, loop):
        assert_close(a, b)


def test_other_implementations_are_left_alone():
    model = build_tiny_model("qwen2_vl")
    visual = model.backbone.model.visual
    visual.config._attn_implementation = "flash_attention_2"  # e.g. a model a user loads with flash-attn
    assert not va.use_packed_vision_attention(model.backbone)
    assert visual.config._attn_implementation == "flash_attention_2"


def test_rejects_what_it_does_not_compute():
    q = torch.randn(1, 2, 8, 4)
    cu = torch.tensor([0, 4, 8])
    module = torch.nn.Module()
    with pytest.raises(ValueError, match="non-causal"):
        va.packed_attention(module, q, q, q, is_causal=True, cu_seq_lens_q=cu)
    with pytest.raises(ValueError, match="segments must match"):
        va.packed_attention(module, q, q, q, cu_seq_lens_q=cu, cu_seq_lens_k=torch.tensor([0, 2, 8]))
