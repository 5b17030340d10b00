import math

import torch

from zreward import default_rubric
from zreward.training.losses import soft_label_ce, thurstone_pair_loss


def test_soft_label_ce_masks_missing_dimensions():
    probs = torch.softmax(torch.randn(2, 3, 4), -1)
    target = torch.softmax(torch.randn(2, 3, 4), -1)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    expected = sum(-(target[b, d] * probs[b, d].log()).sum() for b in range(2) for d in range(3) if mask[b, d]) / 3
    torch.testing.assert_close(soft_label_ce(probs, target, mask), expected)
    torch.testing.assert_close(soft_label_ce(probs, target), -(target * probs.log()).sum(-1).mean())


def test_thurstone_pair_loss_by_hand():
    r = default_rubric()
    values = torch.tensor(r.values)
    weights = torch.tensor(r.weights)
    probs = torch.zeros(3, 4, 9)
    probs[0, :, 8] = 1  # all 5.0
    probs[1, :, 0] = 1  # all 1.0
    probs[2, :, 4] = 1  # another group: no pair
    group = torch.tensor([0, 0, 1])
    human = torch.tensor([4.0, 2.0, 3.0])
    loss = thurstone_pair_loss(probs, values, weights, group, human, eps=1e-3)
    z = (5.0 - 1.0) / math.sqrt(1e-3)
    p = min(0.5 * (1 + math.erf(z / math.sqrt(2))), 1 - 1e-6)
    assert abs(loss.item() - (-math.log(p))) < 1e-5
    # the opposite human preference is penalized heavily; a tie costs log 2 at p = 1 - 1e-6 ... > 0
    assert thurstone_pair_loss(probs, values, weights, group, torch.tensor([2.0, 4.0, 3.0])) > 10
    assert thurstone_pair_loss(probs[2:], values, weights, group[2:], human[2:]) == 0


def test_thurstone_pair_loss_has_gradients():
    r = default_rubric()
    logits = torch.randn(4, 4, 9, requires_grad=True)
    loss = thurstone_pair_loss(torch.softmax(logits, -1), torch.tensor(r.values), torch.tensor(r.weights),
                               torch.tensor([0, 0, 1, 1]), torch.tensor([3.0, 4.0, 2.0, 2.0]))
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_vision_warmup_trains_only_the_vision_tower(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from zreward.data import load_dataset
    from zreward.models import build_tiny_model
    from zreward.training import sft_config_for
    from zreward.training.vision_warmup import warm_up_vision

    (tmp_path / "images").mkdir()
    rows = []
    for i in range(8):
        Image.fromarray(np.full((56, 56, 3), 30 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        rows.append({"prompt": f"card {i // 2}", "image": f"images/{i}.png", "scores": {"fidelity": [1.0 + i / 2]}})
    (tmp_path / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset(tmp_path)
    model = build_tiny_model("qwen2_vl", corpus=data.prompts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = sft_config_for(tmp_path / "out")
    log = warm_up_vision(model, data, cfg, minutes=0.05, lr=1e-3, batch_size=4)
    assert log["steps"] >= 1 and math.isfinite(log["loss"])
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".visual." in k or k.startswith("backbone.model.visual") for k in changed), changed
    assert not any("language_model" in k or "lm_head" in k for k in changed)


def test_caption_loss_predicts_the_next_token():
    from zreward.training.losses import caption_loss

    input_ids = torch.tensor([[5, 7, 9, 2]])
    mask = torch.tensor([[False, True, True, False]])  # positions 1 and 2 predict tokens 9 and 2
    logits = torch.randn(2, 12)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([9, 2]))
    torch.testing.assert_close(caption_loss(logits, input_ids, mask), expected)
