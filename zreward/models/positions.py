"""3-D M-RoPE position ids of the student template, from one table instead of a loop over rows.

The template puts the same head (chat tokens, the image, the instruction) before every prompt and
pads on the right, so the image sits at the same offset in every row and a real token's position is
a function of its index alone. The backbone's own `get_rope_index` (run once on a full-length row)
therefore gives every row's positions: its first L columns at real tokens, 0 at padding (what
`get_rope_index` writes there). Hugging Face's forward instead loops over the rows in Python, dozens
of tiny ops and a host sync a row: next to the tiny models' arithmetic, on a GPU that host-side loop
set the step time (`bench/bench_train_step.py --device cuda`).
Engines store the same table (zreward.engines.host).
"""

from __future__ import annotations

import torch


def position_table(model, length: int) -> torch.Tensor:
    """(R, length) int64 (R = 3 rotary sections): the backbone's `get_rope_index` positions of a
    full-length template row."""
    enc = model.encoder
    filler = length - len(enc.head)
    ids = torch.tensor([list(enc.head) + [enc.pad_id] * filler], dtype=torch.long)
    mm = (ids == enc.image_id).long()
    grid = model.image_size // model.family.patch_size
    thw = torch.tensor([[1, grid, grid]], dtype=torch.long)
    pos, _ = model.backbone.model.get_rope_index(ids, mm_token_type_ids=mm, image_grid_thw=thw,
                                                 attention_mask=torch.ones_like(ids))
    return pos[:, 0, :].clone()


class TemplatePositions:
    """Position ids for batches laid out by the model's own template; None for anything else (the
    backbone then computes them itself). The table grows to the longest batch seen."""

    def __init__(self, model):
        self.model = model
        self.enabled = True  # False hands every batch to the backbone's own loop (benchmarks compare the two)
        self.table: torch.Tensor | None = None  # (R, L) on the last device used
        self.image_mask: torch.Tensor | None = None  # (L,) 1 at the head's image tokens

    def _tables(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.table is None or self.table.shape[1] < length or self.table.device != device:
            size = max(length, 0 if self.table is None else self.table.shape[1])
            self.table = position_table(self.model, size).to(device)
            head = torch.tensor(self.model.encoder.head)
            mask = torch.zeros(size, dtype=torch.long)
            mask[: len(head)] = (head == self.model.encoder.image_id).long()
            self.image_mask = mask.to(device)
        return self.table[:, :length], self.image_mask[:length]

    def __call__(self, input_ids, attention_mask, mm_token_type_ids, image_grid_thw) -> torch.Tensor | None:
        b, length = input_ids.shape
        if (not self.enabled or image_grid_thw is None or mm_token_type_ids is None or image_grid_thw.shape[0] != b
                or length < len(self.model.encoder.head)):
            return None
        table, image_mask = self._tables(length, input_ids.device)
        grid = self.model.image_size // self.model.family.patch_size
        # One host sync: every image on the model's grid, image tokens only where the head has them,
        # and right padding (real tokens form a prefix of each row).
        fits = ((image_grid_thw == image_grid_thw.new_tensor([1, grid, grid])).all()
                & (mm_token_type_ids == image_mask).all()
                & (attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
        if not bool(fits):
            return None
        return table.unsqueeze(1) * attention_mask.unsqueeze(0).to(table.dtype)  # (R, B, L)
