"""Function-preserving widening: the widened model scores as the narrow one (exactly without noise,
closely with the symmetry-breaking perturbation), round-trips through save/load, and trains."""

import pytest
import torch

from zreward.errors import InputError
from zreward.models import build_tiny_model, load_model
from zreward.models.widen import widen_model
from zreward.testing import assert_close

PROMPTS = ["a red circle", "two blue squares left of a green triangle on a grey background", "x"]


def _probs(model, images):
    with torch.no_grad():
        return model.score(images, PROMPTS).probs


@pytest.mark.parametrize("factor", [2, 3])
def test_widened_model_scores_as_the_narrow_one(factor):
    model = build_tiny_model("qwen2_vl", image_size=112, hidden=64, vision_hidden=64, seed=3)
    images = torch.rand(3, 3, 112, 112)
    wide = widen_model(model, factor, noise=0.0)
    text, vision = wide.backbone.config.text_config, wide.backbone.config.vision_config
    assert (text.hidden_size, vision.embed_dim, vision.hidden_size) == (64 * factor, 64 * factor, 64 * factor)
    assert text.num_attention_heads == model.backbone.config.text_config.num_attention_heads * factor
    n = lambda m: sum(p.numel() for p in m.backbone.model.language_model.layers.parameters())
    assert n(wide) > (factor**2 - 0.5) * n(model)
    assert_close(_probs(wide, images), _probs(model, images))


def test_noise_breaks_the_copies_and_keeps_the_scores_close(tmp_path):
    model = build_tiny_model("qwen2_vl", image_size=112, seed=4)
    images = torch.rand(3, 3, 112, 112)
    wide = widen_model(model, 2, noise=1e-2, seed=0)
    w = wide.backbone.model.language_model.layers[0].mlp.up_proj.weight
    half = w.shape[0] // 2
    assert not torch.allclose(w[:half], w[half:])  # repeated units differ, so training can pull them apart
    diff = (_probs(wide, images) - _probs(model, images)).abs().max()
    assert 0 < diff < 0.05
    wide.save_pretrained(tmp_path / "wide")
    assert_close(_probs(load_model(tmp_path / "wide"), images), _probs(wide, images))


def test_other_families_and_bad_factors_are_refused():
    with pytest.raises(InputError, match="qwen2_vl"):
        widen_model(build_tiny_model("qwen2_5_vl"), 2)
    with pytest.raises(InputError, match="integer >= 2"):
        widen_model(build_tiny_model("qwen2_vl"), 1)
