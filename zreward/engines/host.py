"""Host-side inputs of an engine: images and prompts -> the static graph's tensors.

Runs the package's one preprocessing definition (`preprocess_images`) and prompt encoder
(`PromptEncoder`), exactly as the PyTorch model does, and adds the 3-D M-RoPE position ids.

Position ids: the student template puts the same head (chat tokens, the image, the instruction)
before every prompt, so the image sits at the same offset in every row and the position of a real
token is a function of its index alone. The backbone's own `get_rope_index` is therefore run once at
export on a full-length row and stored as a (3, max_length) table; a row's positions are the table's
first L columns at real tokens and 0 at padding (what `get_rope_index` writes there). The export
verifies the table against `get_rope_index` on real batches.
"""

from __future__ import annotations

import threading

import torch

from zreward.errors import InputError
from zreward.models.backbones import Family
from zreward.models.positions import position_table  # noqa: F401  (the engines' table, re-exported)
from zreward.models.processing import PromptEncoder, preprocess_images


def max_length(encoder: PromptEncoder) -> int:
    """The longest student-template sequence (prompt at its token cap, no rationale)."""
    return (len(encoder.head) + encoder.template.max_prompt_tokens + len(encoder.assistant)
            + sum(len(p) + 1 for p in encoder.dim_prefix) + len(encoder.tail))


def min_length(encoder: PromptEncoder) -> int:
    """The shortest student-template sequence (a one-token prompt)."""
    return max_length(encoder) - encoder.template.max_prompt_tokens + 1


class HostInputs:
    """images (list of (3, H, W) in [0, 1]) + prompts -> dict of the graph's input tensors (CPU)."""

    def __init__(self, encoder: PromptEncoder, family: Family, image_size: int, positions: torch.Tensor,
                 fixed_length: bool = False):
        self.encoder, self.family, self.image_size = encoder, family, image_size
        self.positions = positions.long()  # (3, max_length)
        self.max_length = int(positions.shape[1])
        # Graphs whose text length is static (linear-attention decoders) get every row padded to it.
        self.fixed_length = fixed_length
        grid = image_size // family.patch_size
        self.patches = grid * grid
        # A fast tokenizer resets its padding / truncation state on each encode: one thread at a time.
        self._lock = threading.Lock()

    def __call__(self, images, prompts) -> dict[str, torch.Tensor]:
        if len(images) != len(prompts):
            raise InputError(f"got {len(images)} images but {len(prompts)} prompts")
        with self._lock:
            layout = self.encoder(list(prompts))
        length = layout.input_ids.shape[1]
        if length > self.max_length:
            raise InputError(f"a prompt encodes to {length} tokens, above the engine's maximum {self.max_length}")
        ids, mask = layout.input_ids, layout.attention_mask
        if self.fixed_length and length < self.max_length:
            # Right padding never changes real tokens under causal attention (see PromptEncoder).
            extra = self.max_length - length
            ids = torch.cat([ids, ids.new_full((ids.shape[0], extra), self.encoder.pad_id)], 1)
            mask = torch.cat([mask, mask.new_zeros((mask.shape[0], extra))], 1)
            length = self.max_length
        pixel_values, _ = preprocess_images(images, self.image_size, self.family)
        pos = self.positions[:, :length].unsqueeze(0) * mask.unsqueeze(1)  # (B, 3, L), 0 at padding
        return {
            "pixel_values": pixel_values.float().reshape(len(prompts), self.patches, -1).contiguous(),
            "input_ids": ids.contiguous(),
            "attention_mask": mask.contiguous(),
            "position_ids": pos.contiguous(),
            "read_positions": layout.read_positions.contiguous(),
        }
