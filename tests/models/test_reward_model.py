import json

import numpy as np
import pytest
import torch
from PIL import Image

from zreward import InputError, default_rubric, five_level_rubric
from zreward.models import FAMILIES, ZRewardModel, build_tiny_model, load_pretrained
from zreward.models.processing import patchify, preprocess_images
from zreward.testing import BATCH_INVARIANCE_ATOL

FAMILY_NAMES = sorted(FAMILIES)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model("qwen2_vl")


def _images(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(n)]


def test_template_has_one_slot_per_dimension(tiny):
    layout = tiny.encoder(["two red circles", "a blue star above a green square on a white background"])
    slot = tiny.encoder.slot_id
    for row, reads in zip(layout.input_ids, layout.read_positions):
        slots = (row == slot).nonzero().flatten()
        assert len(slots) == tiny.rubric.num_dimensions
        # each distribution is read right before its slot, where the causal LM predicts the slot token
        assert torch.equal(reads + 1, slots)
    assert int((layout.mm_token_type_ids[0] == 1).sum()) == tiny.image_tokens


def test_template_follows_rubric():
    rubric = five_level_rubric(dimensions=[("quality", "overall quality")])
    m = build_tiny_model("qwen2_vl", rubric=rubric)
    d = m.score(_images(2, 112), ["a cat", "a dog"])
    assert d.probs.shape == (2, 1, 5)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_scores_and_is_batch_invariant(family):
    m = build_tiny_model(family)
    imgs = _images(3, m.image_size)
    prompts = ["two red circles", "a blue square left of a green star, on a gray background", "x"]
    d = m.score(imgs, prompts)
    assert d.probs.shape == (3, 4, 9) and d.probs.dtype == torch.float32
    torch.testing.assert_close(d.probs.sum(-1), torch.ones(3, 4))
    for i in range(3):
        single = m.score([imgs[i]], [prompts[i]])
        assert (single.probs[0] - d.probs[i]).abs().max() <= BATCH_INVARIANCE_ATOL


def test_head_reads_only_score_rows(tiny):
    """Changing a non-score lm_head row must not change the scores (no full-vocabulary softmax)."""
    imgs = _images(2, 112)
    before = tiny.score(imgs, ["a", "b"]).probs
    head = tiny.backbone.get_output_embeddings().weight
    other = next(i for i in range(head.shape[0]) if i not in tiny.score_token_ids.tolist())
    with torch.no_grad():
        head[other] += 100.0
    after = tiny.score(imgs, ["a", "b"]).probs
    with torch.no_grad():
        head[other] -= 100.0
    torch.testing.assert_close(before, after, atol=0, rtol=0)


def test_patchify_matches_hf_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    fam = FAMILIES["qwen2_vl"]
    proc = Qwen2VLImageProcessorPil(min_pixels=112 * 112, max_pixels=112 * 112)
    arr = (np.random.default_rng(0).random((112, 112, 3)) * 255).astype(np.uint8)
    ref = proc(images=[Image.fromarray(arr)], return_tensors="pt")
    ours, grid = preprocess_images([torch.from_numpy(arr).permute(2, 0, 1).float() / 255], 112, fam)
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    torch.testing.assert_close(ours, ref["pixel_values"].float(), atol=1e-5, rtol=1e-5)


def test_patchify_is_differentiable_and_invertible_in_shape():
    fam = FAMILIES["qwen3_vl"]
    x = torch.rand(2, 3, 128, 128, requires_grad=True)
    p = patchify(x, fam)
    assert p.shape == (2 * 8 * 8, 3 * 2 * 16 * 16)
    p.sum().backward()
    # every pixel appears temporal_patch_size times
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


def test_save_load_round_trip_identical(tiny, tmp_path):
    imgs = _images(3, 112)
    prompts = ["a", "two red circles", "c"]
    before = tiny.score(imgs, prompts).probs
    tiny.save_pretrained(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "zreward.json").read_text())
    assert spec["rubric"]["values"] == list(default_rubric().values)
    loaded = ZRewardModel.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded.score(imgs, prompts).probs, before, atol=0, rtol=0)


def test_differentiable_path_reaches_pixels(tiny):
    x = torch.stack(_images(2, 112)).requires_grad_()
    reward = tiny.score_tensors(x, "two red circles").normalized()
    reward.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    eager = tiny.score(list(x.detach()), ["two red circles"] * 2)
    torch.testing.assert_close(reward.detach(), eager.normalized(), atol=1e-6, rtol=1e-6)


def test_input_forms_agree(tiny, tmp_path):
    arr = (np.random.default_rng(1).random((112, 112, 3)) * 255).astype(np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    t = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    forms = [Image.fromarray(arr), str(path), arr, t]
    probs = [tiny.score([f], "a cat").probs for f in forms]
    for p in probs[1:]:
        torch.testing.assert_close(p, probs[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_non_rgb_modes(tiny, mode):
    img = Image.fromarray((np.random.default_rng(2).random((60, 90, 3)) * 255).astype(np.uint8)).convert(mode)
    d = tiny.score([img], "a cat")
    assert torch.isfinite(d.probs).all()


def test_half_precision_pixels_and_prompt_types(tiny):
    """bf16 / fp16 pixels (a half-precision diffusion pipeline's) score as their float32 values do, with
    gradients; prompts that are not strings are an error naming the type."""
    x = torch.rand(3, 80, 80).bfloat16().float()  # representable in bf16 exactly
    ref = tiny.score([x], "a cat").probs
    for dtype in (torch.bfloat16, torch.float16):
        torch.testing.assert_close(tiny.score([x.to(dtype)], "a cat").probs, ref, atol=2e-6, rtol=0)
    px = x.to(torch.bfloat16).unsqueeze(0).requires_grad_()
    tiny.score_tensors(px, ["a cat"]).overall_mean.sum().backward()
    assert px.grad is not None and px.grad.dtype == torch.bfloat16 and px.grad.abs().sum() > 0
    for bad, needle in ((None, "NoneType"), (5, "int"), ([3], "holding \\['int'\\]")):
        with pytest.raises(InputError, match=f"prompts must be a string or a list of strings, got .*{needle}"):
            tiny.score([x], bad)
        with pytest.raises(InputError, match=f"prompts must be a string or a list of strings, got .*{needle}"):
            tiny.score_tensors(x[None], bad)
    for bad in (x, [x]):  # not one (B, 3, H, W) tensor
        with pytest.raises(InputError, match=r"score_tensors takes one \(B, 3, H, W\)"):
            tiny.score_tensors(bad, "a cat")


def test_special_token_text_in_a_prompt_stays_text(tiny):
    """A prompt that spells the template's special tokens gets no extra image or score slot: the
    same image count and one slot per dimension, and it scores."""
    enc = tiny.encoder
    ids, reads = enc.encode_one("a cat <|image_pad|><|vision_start|> <|score|> <|score_5|> <|im_end|>")
    plain, _ = enc.encode_one("a cat")
    specials = set(tiny.tokenizer.all_special_ids) | {enc.image_id, enc.slot_id}
    assert ids.count(enc.image_id) == plain.count(enc.image_id)
    assert ids.count(enc.slot_id) == tiny.rubric.num_dimensions == len(reads)
    assert not specials & set(enc.prompt_ids("<|image_pad|> <|score|> <|im_end|>"))
    assert torch.isfinite(tiny.score(_images(1, 112), "<|image_pad|> a cat <|score|>").probs).all()


def test_tiny_and_huge_images(tiny):
    with pytest.raises(InputError, match="too small"):
        tiny.score([Image.new("RGB", (4, 4))], "a cat")
    big = Image.new("RGB", (2000, 1500), (10, 200, 30))
    assert torch.isfinite(tiny.score([big], "a cat").probs).all()


def test_bad_inputs(tiny, tmp_path):
    with pytest.raises(InputError, match="not found"):
        tiny.score([str(tmp_path / "missing.png")], "a")
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match="corrupt.png"):
        tiny.score([str(bad)], "a")
    with pytest.raises(InputError, match="empty prompt"):
        tiny.score(_images(1, 112), "   ")
    x = torch.rand(3, 112, 112)
    x[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        tiny.score([x], "a")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        tiny.score([torch.rand(3, 112, 112) * 255], "a")
    with pytest.raises(InputError, match="2 images but 1 prompts"):
        tiny.score(_images(2, 112), ["a"])


def test_checkpoint_rubric_mismatch(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    with pytest.raises(InputError, match="does not match"):
        load_pretrained(tmp_path / "m", rubric=five_level_rubric())
    spec = json.loads((tmp_path / "m" / "zreward.json").read_text())
    spec["rubric"]["score_tokens"][0] = "<|not_in_vocab|>"
    (tmp_path / "m" / "zreward.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="score tokens"):
        load_pretrained(tmp_path / "m")
    spec["format_version"] = 99
    (tmp_path / "m" / "zreward.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="format"):
        load_pretrained(tmp_path / "m")
    with pytest.raises(InputError, match="not a model directory"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("damage,message", [
    (lambda spec: spec.pop("rubric"), r"zreward.json: missing key 'rubric'"),
    (lambda spec: spec.pop("image_size"), r"zreward.json: missing key 'image_size'"),
    (lambda spec: spec.update(image_size="112"), r"zreward.json: 'image_size' must be int, got str"),
    (lambda spec: spec["rubric"].update(values=[]), r"zreward.json: rubric: "),
    (lambda spec: [], r"zreward.json: expected a JSON object, got list"),
])
def test_damaged_checkpoint_spec_is_named(tiny, tmp_path, damage, message):
    tiny.save_pretrained(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "zreward.json").read_text())
    out = damage(spec)
    (tmp_path / "m" / "zreward.json").write_text(json.dumps(out if isinstance(out, list) else spec))
    with pytest.raises(InputError, match=message):
        load_pretrained(tmp_path / "m")


def test_damaged_weights_and_missing_directories(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match=r"m: cannot load model \(\w*Error"):
        load_pretrained(tmp_path / "m")
    for name in ("./no-such-model", str(tmp_path / "absent"), "a/b/c"):  # paths, not hub ids: no network call
        with pytest.raises(InputError, match="no such model directory"):
            load_pretrained(name)


def test_errors_name_the_input_across_batches(tiny):
    """Indices in errors count from the caller's list, not from the batch the input landed in."""
    ims = _images(4, 112)
    ims[3] = ims[3].clone()
    ims[3][0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="image 3: tensor contains NaN"):
        tiny.score(ims, "a cat", batch_size=2)
    with pytest.raises(InputError, match="prompt 3: empty prompt"):
        tiny.score(_images(4, 112), ["a", "b", "c", " "], batch_size=2)
    with pytest.raises(InputError, match="batch_size must be a positive integer, got '2'"):
        tiny.score(_images(1, 112), "a", batch_size="2")


def test_score_tensors_checks_like_score(tiny):
    with pytest.raises(InputError, match="image 0: 1x1 is too small"):
        tiny.score_tensors(torch.rand(2, 3, 1, 1), "a")
    with pytest.raises(InputError, match="no images to score"):
        tiny.score_tensors(torch.zeros(0, 3, 112, 112), [])


def test_base_checkpoint_gets_rubric_tokens(tmp_path):
    """A plain HF VLM checkpoint (no zreward.json) loads through the same path, tokens added."""
    from transformers import AutoModelForImageTextToText

    from zreward.models.backbones import tiny_config
    from zreward.models.tokenizer import CHAT_TOKENS, build_tokenizer, token_ids

    rubric = five_level_rubric()  # build the tokenizer without the default rubric's tokens
    tok = build_tokenizer(rubric)
    tok.add_special_tokens({"additional_special_tokens": []})
    names = ["image_pad", "video_pad", "vision_start", "vision_end", "pad", "im_end"]
    ids = dict(zip(["image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id",
                    "pad_token_id", "eos_token_id"], token_ids(tok, [CHAT_TOKENS[n] for n in names])))
    base = AutoModelForImageTextToText.from_config(tiny_config("qwen2_vl", len(tok), ids))
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    m = load_pretrained(tmp_path / "base", image_size=112)  # default rubric: 9 new score tokens
    assert m.rubric == default_rubric()
    d = m.score(_images(1, 112), "a cat")
    assert d.probs.shape == (1, 4, 9)
