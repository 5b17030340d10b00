"""The static-shape wrapper against the Hugging Face forward, for every supported backbone."""

import pytest
import torch
from engine_helpers import pytorch_probs, sample

from zreward import InputError
from zreward.distribution import moments
from zreward.engines.host import HostInputs, max_length, min_length, position_table
from zreward.engines.static import SUPPORTED, StaticScorer, export_program, has_static_length
from zreward.engines.vision import StaticVisionTower
from zreward.models import build_tiny_model
from zreward.testing import BATCH_INVARIANCE_ATOL, ENGINE_PROBS_ATOL


@pytest.fixture(scope="module", params=SUPPORTED)
def family(request):
    model = build_tiny_model(request.param)
    host = HostInputs(model.encoder, model.family, model.image_size, position_table(model, max_length(model.encoder)))
    return model, StaticScorer(model).eval(), host


def test_static_graph_matches_huggingface(family):
    model, scorer, host = family
    images, prompts = sample(image_size=model.image_size)
    with torch.no_grad():
        probs, mean, std = scorer(**host(images, prompts))
    ref = pytorch_probs(model, images, prompts)
    assert probs.shape == ref.shape == (len(images), model.rubric.num_dimensions, model.rubric.num_bins)
    assert (probs - ref).abs().max() <= ENGINE_PROBS_ATOL
    m, v = moments(ref, model.bin_values)
    assert (mean - m).abs().max() <= ENGINE_PROBS_ATOL * 5
    assert (std - v.sqrt()).abs().max() <= ENGINE_PROBS_ATOL * 5


def test_host_positions_are_the_backbones_rope_index(family):
    model, _, host = family
    images, prompts = sample(1, 3, model.image_size)
    ref = model.prepare(images, prompts)
    pos, _ = model.backbone.model.get_rope_index(
        ref["input_ids"], mm_token_type_ids=ref["mm_token_type_ids"], image_grid_thw=ref["image_grid_thw"],
        attention_mask=ref["attention_mask"])
    inputs = host(images, prompts)
    assert torch.equal(inputs["position_ids"], pos.transpose(0, 1))
    assert torch.equal(inputs["input_ids"], ref["input_ids"])


def test_padding_to_the_fixed_length_changes_nothing(family):
    model, scorer, host = family
    images, prompts = sample(2, 2, model.image_size)
    fixed = HostInputs(host.encoder, host.family, host.image_size, host.positions, fixed_length=True)
    a, b = host(images, prompts), fixed(images, prompts)
    assert b["input_ids"].shape[1] == max_length(model.encoder) > a["input_ids"].shape[1]
    with torch.no_grad():
        diff = (scorer(**a)[0] - scorer(**b)[0]).abs().max()
    assert diff <= BATCH_INVARIANCE_ATOL


def test_length_range_covers_the_template(family):
    model, _, host = family
    lo, hi = min_length(model.encoder), max_length(model.encoder)
    short = host([torch.rand(3, 40, 40)], ["x"])["input_ids"].shape[1]
    long = host([torch.rand(3, 40, 40)], ["circle " * 500])["input_ids"].shape[1]
    assert lo <= short < long == hi


def test_qwen2_5_window_attention_is_blocked():
    model = build_tiny_model("qwen2_5_vl")
    tower = StaticScorer(model).vision
    mask = tower.window_mask
    assert mask.shape == (tower.patches, tower.patches) and not bool(mask.all())
    assert torch.equal(mask, mask.T) and bool(mask.diagonal().all())
    # the window permutation is a permutation of merge units, undone at the end
    assert torch.equal(tower.window_index[tower.window_reverse], torch.arange(tower.patches // tower.unit))


def test_qwen3_5_decoder_needs_a_static_length():
    assert has_static_length(StaticScorer(build_tiny_model("qwen3_5")))
    assert not has_static_length(StaticScorer(build_tiny_model("qwen2_vl")))


def test_unsupported_backbone_is_an_input_error():
    model = build_tiny_model("qwen2_vl")
    with pytest.raises(InputError, match="unsupported backbone 'llava'"):
        StaticVisionTower(model.backbone.model.visual, "llava", 8)


def test_export_program_has_a_dynamic_batch_and_length():
    model = build_tiny_model("qwen2_vl", layers=1, vision_depth=1)
    lo, hi = min_length(model.encoder), max_length(model.encoder)
    host = HostInputs(model.encoder, model.family, model.image_size, position_table(model, hi))
    images, prompts = sample(1, 3, model.image_size)
    program = export_program(StaticScorer(model).eval(), host(images[:2], prompts[:2]), (1, 8), (lo, hi))
    run = program.module()
    ref = pytorch_probs(model, images, prompts)
    for i in (slice(0, 1), slice(0, 4)):  # batch 1 and 4, other lengths than the traced example
        probs = run(**host(images[i], prompts[i]))[0]
        assert (probs - ref[i]).abs().max() <= ENGINE_PROBS_ATOL


def test_export_program_with_a_single_batch_size():
    model = build_tiny_model("qwen2_vl", layers=1, vision_depth=1)
    hi = max_length(model.encoder)
    host = HostInputs(model.encoder, model.family, model.image_size, position_table(model, hi), fixed_length=True)
    images, prompts = sample(1, 1, model.image_size)
    program = export_program(StaticScorer(model).eval(), host(images[:1], prompts[:1]), (1, 1), (hi, hi))
    probs = program.module()(**host(images[1:], prompts[1:]))[0]
    assert (probs - pytorch_probs(model, images[1:], prompts[1:])).abs().max() <= ENGINE_PROBS_ATOL
