"""The one preprocessing definition: images and prompts -> backbone inputs, all in torch.

Images: float (3, H, W) in [0, 1] -> resized (bicubic, antialiased) to the model's fixed square
resolution -> normalized -> patchified into the Qwen-VL flat layout (P, C * T * p * p). Every step
is a differentiable torch op, so eager scoring, exported engines (which run this on the host) and
reward-guided training (gradients to the pixels) share it exactly.

Prompts: the student template puts the image first, then the prompt, then one score slot per
rubric dimension; the distribution of a dimension is read at the position just before its slot
(where a causal LM predicts the slot's token). Slots hold a fixed placeholder token, so all D
dimensions come from ONE forward pass (our choice, documented in the README).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from zreward.errors import InputError
from zreward.models.backbones import Family
from zreward.models.tokenizer import CHAT_TOKENS
from zreward.rubric import Rubric


# --- images ---------------------------------------------------------------------------------------
def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, h, w) or (B, 3, h, w) -> (..., 3, size, size); identity when already that size.

    Half-precision pixels (a bf16 diffusion pipeline's) are taken to float32 first: the CPU has no
    half-precision antialiased resize, and the model's own dtype is applied after preprocessing."""
    if image.dtype in (torch.float16, torch.bfloat16):
        image = image.float()
    if image.shape[-2:] == (size, size):
        return image
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return x if batched else x[0]


def patchify(images: torch.Tensor, family: Family) -> torch.Tensor:
    """(B, 3, H, W) normalized -> (B * gh * gw, 3 * T * p * p) in the HF Qwen-VL patch order."""
    b, c, h, w = images.shape
    p, m, t = family.patch_size, family.merge_size, family.temporal_patch_size
    gh, gw = h // p, w // p
    x = images.reshape(b, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (b, gh/m, gw/m, m, m, c, p, p)
    x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)  # a still image repeats over the temporal patch
    return x.reshape(b * gh * gw, c * t * p * p)


def preprocess_images(images: torch.Tensor | list[torch.Tensor], size: int, family: Family):
    """[0, 1] images -> (pixel_values (B * P, C*T*p*p), image_grid_thw (B, 3)). Differentiable."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        x = resize(images, size)
    else:
        x = torch.stack([resize(im, size) for im in images])
    mean = torch.tensor(family.image_mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(family.image_std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    pixel_values = patchify((x - mean) / std, family)
    g = size // family.patch_size
    grid = torch.tensor([[1, g, g]], dtype=torch.long, device=x.device).expand(x.shape[0], 3)
    return pixel_values, grid


# --- prompts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptTemplate:
    """The student template; a reasoning teacher extends it with a rationale before the slots."""

    instruction: str = "Rate the image for the prompt on each dimension."
    describe_dimensions: bool = False
    max_prompt_tokens: int = 96

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextLayout:
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    mm_token_type_ids: torch.Tensor  # (B, L) 1 at image tokens
    read_positions: torch.Tensor  # (B, D): where each dimension's distribution is read


class PromptEncoder:
    """Builds token ids for (prompt, optional rationale) with known slot positions, right-padded.

    Right padding keeps every real token's position and attention identical whatever the batch
    (a causal model never attends to the padding after it), so scores are batch-invariant.
    """

    def __init__(self, tokenizer, rubric: Rubric, template: PromptTemplate, image_tokens: int):
        self.tok, self.rubric, self.template = tokenizer, rubric, template
        vocab = tokenizer.get_vocab()
        for t in list(CHAT_TOKENS.values()) + [rubric.slot_token]:
            if t not in vocab:
                raise InputError(f"tokenizer lacks the template token {t!r}")
        self.pad_id = vocab[CHAT_TOKENS["pad"]]
        self.image_id = vocab[CHAT_TOKENS["image_pad"]]
        self.slot_id = vocab[rubric.slot_token]
        enc = lambda s: tokenizer.encode(s, add_special_tokens=False)
        # Users' text (prompts, rationales) is text: "<|image_pad|>" or "<|score|>" typed in a prompt must
        # not become the template's special tokens (an extra image slot, a second score slot).
        self._enc = lambda s: tokenizer.encode(s, add_special_tokens=False, split_special_tokens=True)
        self.head = (
            enc(f"{CHAT_TOKENS['im_start']}user\n{CHAT_TOKENS['vision_start']}")
            + [self.image_id] * image_tokens
            + enc(f"{CHAT_TOKENS['vision_end']}{template.instruction}")
        )
        if template.describe_dimensions:
            self.head += enc("".join(f"\n- {d.name}: {d.description}" for d in rubric.dimensions))
        self.head += enc("\nPrompt: ")
        self.assistant = enc(f"{CHAT_TOKENS['im_end']}\n{CHAT_TOKENS['im_start']}assistant\n")
        self.dim_prefix = [enc(("" if i == 0 else "\n") + f"{d.name}: ") for i, d in enumerate(rubric.dimensions)]
        self.tail = enc(CHAT_TOKENS["im_end"])

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's tokens as the template holds them (stripped, truncated to max_prompt_tokens)."""
        return self._enc(prompt.strip())[: self.template.max_prompt_tokens]

    def prompt_span(self, prompt: str) -> tuple[int, int]:
        """[start, end) of the prompt's tokens in encode_one's ids (the same for every rationale)."""
        return len(self.head), len(self.head) + len(self.prompt_ids(prompt))

    def explanation_ids(self, rationale: str, max_tokens: int) -> list[int]:
        """The tokens a student may be trained to write AFTER its slots (an auxiliary loss): the
        rationale's first `max_tokens`. Scoring never sees them: the slots come first and attention is causal."""
        return self._enc("\n" + rationale.strip())[:max_tokens]

    def encode_one(self, prompt: str, rationale: str | None = None, where: str = "prompt") -> tuple[list[int], list[int]]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: empty prompt")
        ids = list(self.head) + self.prompt_ids(prompt) + list(self.assistant)
        if rationale:
            ids += self._enc(rationale.strip() + "\n")
        reads = []
        for prefix in self.dim_prefix:
            ids += prefix
            reads.append(len(ids) - 1)  # the token before the slot predicts the slot's score token
            ids.append(self.slot_id)
        return ids + self.tail, reads

    def __call__(self, prompts: list[str], rationales: list[str | None] | None = None) -> TextLayout:
        rationales = rationales or [None] * len(prompts)
        rows = [self.encode_one(p, r, f"prompt {i}") for i, (p, r) in enumerate(zip(prompts, rationales))]
        length = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (ids, _) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
        reads = torch.tensor([r for _, r in rows], dtype=torch.long)
        return TextLayout(input_ids, attention, (input_ids == self.image_id).long(), reads)


class InputPreparer:
    """[0, 1] images + prompts -> the backbone's keyword inputs: the body of ZRewardModel.prepare.

    It holds no weights, so data-loader workers can run it on the CPU while the model sits on a GPU.
    """

    def __init__(self, encoder: PromptEncoder, image_size: int, family: Family):
        self.encoder, self.image_size, self.family = encoder, image_size, family

    def __call__(self, images, prompts, rationales=None, device=None, dtype: torch.dtype = torch.float32) -> dict:
        if len(images) != len(prompts):
            raise InputError(f"got {len(images)} images but {len(prompts)} prompts")
        layout = self.encoder(list(prompts), list(rationales) if rationales else None)
        dev = torch.device(device) if device is not None else (
            images.device if isinstance(images, torch.Tensor) else images[0].device)
        images = images.to(dev) if isinstance(images, torch.Tensor) else [im.to(dev) for im in images]
        pixel_values, grid = preprocess_images(images, self.image_size, self.family)
        return dict(
            input_ids=layout.input_ids.to(dev), attention_mask=layout.attention_mask.to(dev),
            mm_token_type_ids=layout.mm_token_type_ids.to(dev), pixel_values=pixel_values.to(dtype),
            image_grid_thw=grid, read_positions=layout.read_positions.to(dev),
        )
