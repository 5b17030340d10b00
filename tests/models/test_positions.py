"""Template position ids against the backbone's own per-row `get_rope_index`, for every family:
the same hidden states and gradients on fresh random inputs, and a fallback for off-template input."""

import pytest
import torch

from zreward.models import build_tiny_model
from zreward.testing import assert_close

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5"]
PROMPTS = ["a red circle", "two blue squares left of a green triangle on a grey background", "x"]


def _inputs(model, n=3):
    images = torch.rand(n, 3, model.image_size, model.image_size)
    return model.prepare(images, [PROMPTS[i % len(PROMPTS)] for i in range(n)])


@pytest.mark.parametrize("family", FAMILIES)
def test_template_positions_match_get_rope_index(family):
    model = build_tiny_model(family)
    inputs = _inputs(model)
    assert inputs["attention_mask"].sum(1).unique().numel() > 1  # rows of different lengths: padding in play
    keys = ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw")
    table = model._positions(*(inputs[k] for k in keys))
    assert table is not None
    expected, _ = model.backbone.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"])
    assert torch.equal(table, expected)

    def run(use_table: bool):
        if not use_table:
            model._positions, saved = (lambda *a: None), model._positions
        try:
            x = inputs["pixel_values"].clone().requires_grad_(True)
            probs = model(**{**inputs, "pixel_values": x})
            (probs * torch.linspace(0, 1, probs.numel()).view(probs.shape)).sum().backward()
        finally:
            if not use_table:
                model._positions = saved
        return probs.detach(), x.grad

    for got, want in zip(run(True), run(False)):
        assert_close(got, want)


def test_off_template_inputs_fall_back_to_the_backbone():
    model = build_tiny_model("qwen2_vl")
    inputs = _inputs(model)
    keys = ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw")
    args = [inputs[k] for k in keys]
    assert model._positions(*args) is not None
    left_padded = inputs["attention_mask"].flip(1)
    assert model._positions(args[0], left_padded, *args[2:]) is None
    other_grid = args[3].clone()
    other_grid[0, 1] += 2
    assert model._positions(*args[:3], other_grid) is None
    moved = args[2].roll(1, dims=1)
    assert model._positions(args[0], args[1], moved, args[3]) is None
