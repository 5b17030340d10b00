"""ZRewardModel: a Hugging Face VLM backbone + the distributional score head.

One forward pass reads the hidden state before each of the D score slots and applies the score
head: only the K lm_head rows of the rubric's score tokens (never the full-vocabulary logits),
softmax in float32. `score` is the eager, no-grad scoring API; `score_tensors` is the
differentiable path (gradients reach [0, 1] pixels) used by reward-guided training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.images import check_image_tensor
from zreward.models.backbones import Family, family_of
from zreward.models.positions import TemplatePositions
from zreward.models.processing import InputPreparer, PromptEncoder, PromptTemplate
from zreward.models.vision_attention import use_packed_vision_attention
from zreward.rubric import Rubric

FORMAT_VERSION = 1
SPEC_FILE = "zreward.json"


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """hidden (B, L, H), positions (B, D) -> (B, D, H)."""
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


class ZRewardModel(nn.Module):
    def __init__(self, backbone, tokenizer, rubric: Rubric, image_size: int,
                 template: PromptTemplate | None = None, temperature: float = 1.0):
        super().__init__()
        self.backbone = backbone
        # One batched attention call per vision layer instead of one per image (same maths).
        use_packed_vision_attention(backbone)
        self.tokenizer = tokenizer
        self.rubric = rubric
        self.family: Family = family_of(backbone.config)
        if image_size % self.family.factor:
            raise InputError(f"image_size {image_size} must be a multiple of {self.family.factor} for {self.family.model_type}")
        self.image_size = image_size
        self.template = template or PromptTemplate()
        self.temperature = temperature
        grid = image_size // self.family.patch_size
        self.image_tokens = (grid // self.family.merge_size) ** 2
        self.encoder = PromptEncoder(tokenizer, rubric, self.template, self.image_tokens)
        self.preparer = InputPreparer(self.encoder, image_size, self.family)
        vocab = tokenizer.get_vocab()
        missing = [t for t in rubric.score_tokens if t not in vocab]
        if missing:
            raise InputError(f"tokenizer lacks the rubric's score tokens {missing}")
        ids = torch.tensor([vocab[t] for t in rubric.score_tokens], dtype=torch.long)
        if int(ids.max()) >= backbone.get_output_embeddings().weight.shape[0]:
            raise InputError("score token ids fall outside the backbone's lm_head (checkpoint and tokenizer differ)")
        self.register_buffer("score_token_ids", ids, persistent=False)
        self.register_buffer("bin_values", torch.tensor(rubric.values, dtype=torch.float32), persistent=False)
        self._positions = TemplatePositions(self)

    # --- the graph --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.bin_values.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.get_output_embeddings().weight.dtype

    def score_head_weight(self) -> torch.Tensor:
        """(K, H): the lm_head rows of the score tokens."""
        return self.backbone.get_output_embeddings().weight[self.score_token_ids]

    def hidden_states(self, input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw) -> torch.Tensor:
        """(B, L, H) final hidden states of every position."""
        out = self.backbone.model(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
            image_grid_thw=image_grid_thw, mm_token_type_ids=mm_token_type_ids, use_cache=False,
            position_ids=self._positions(input_ids, attention_mask, mm_token_type_ids, image_grid_thw),
        )
        return out.last_hidden_state

    def slot_hidden(self, input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw,
                    read_positions) -> torch.Tensor:
        """(B, D, H) final hidden states at the read positions."""
        hidden = self.hidden_states(input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw)
        return gather_positions(hidden, read_positions)

    def forward(self, input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw,
                read_positions, return_hidden: bool = False):
        """Returns probs (B, D, K) float32; with return_hidden, (probs, every position's hidden state (B, L, H))
        for auxiliary losses (through forward, so wrappers such as DDP see the call)."""
        hidden = self.hidden_states(input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw)
        probs = self.slot_probs(gather_positions(hidden, read_positions))
        return (probs, hidden) if return_hidden else probs

    def slot_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, D, H) read-position hidden states -> probs (B, D, K) float32."""
        from zreward.ops import score_head

        b, d, h = hidden.shape
        probs, _, _ = score_head(hidden.reshape(b * d, h), self.score_head_weight(), self.bin_values,
                                 temperature=self.temperature)
        return probs.view(b, d, -1)

    def prepare(self, images: torch.Tensor | list[torch.Tensor], prompts: Sequence[str],
                rationales: Sequence[str | None] | None = None) -> dict:
        """[0, 1] images + prompts -> the forward's keyword inputs on the model's device."""
        return self.preparer(images, prompts, rationales, device=self.device, dtype=self.dtype)

    # --- public scoring API -----------------------------------------------------------------------
    def score_tensors(self, images: torch.Tensor, prompts: Sequence[str] | str) -> ScoreDistribution:
        """Differentiable: images (B, 3, H, W) float in [0, 1] -> ScoreDistribution with grad."""
        from zreward.scoring import check_prompts

        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"score_tensors takes one (B, 3, H, W) float tensor in [0, 1], got {shape}")
        if images.shape[0] == 0:
            raise InputError("no images to score")
        prompts = check_prompts(prompts, images.shape[0])
        for i in range(images.shape[0]):
            check_image_tensor(images[i].detach(), f"image {i}")
        return ScoreDistribution(self(**self.prepare(images, prompts)), self.rubric)

    @torch.no_grad()
    def score(self, images, prompts: Sequence[str] | str, batch_size: int = 32,
              progress: bool = False) -> ScoreDistribution:
        """images: PIL / paths / uint8 arrays / float tensors in [0, 1] -> ScoreDistribution (B, D, K)."""
        from zreward.scoring import score_in_batches

        was_training = self.training
        self.eval()
        try:
            return score_in_batches(lambda ims, ps: self(**self.prepare(ims, ps)), self.rubric, images, prompts,
                                    batch_size, progress)
        finally:
            self.train(was_training)

    # --- persistence ------------------------------------------------------------------------------
    def spec(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "backbone": self.family.model_type,
            "image_size": self.image_size,
            "temperature": self.temperature,
            "rubric": self.rubric.to_dict(),
            "template": self.template.to_dict(),
        }

    def save_pretrained(self, path: str | Path, extra_files: dict[str, str] | None = None) -> None:
        """Writes backbone (safetensors) + tokenizer + zreward.json (+ `extra_files`, name -> text, such
        as a training log) atomically into `path`: the directory appears complete or not at all."""
        from zreward.io import atomic_dir

        with atomic_dir(path) as tmp:
            self.backbone.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / SPEC_FILE).write_text(json.dumps(self.spec(), indent=2))
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "ZRewardModel":
        from zreward.models.loading import load_pretrained

        return load_pretrained(path, **kwargs)
