"""The batched scoring loop shared by the PyTorch model and compiled engines (one behaviour for both)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.images import load_images
from zreward.rubric import Rubric


def check_prompts(prompts, n: int) -> list[str]:
    """One prompt per image: a string (for every image) or a sequence of n strings."""
    if isinstance(prompts, str):
        return [prompts] * n
    if not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
        held = f" holding {sorted({type(p).__name__ for p in prompts})}" if isinstance(prompts, Sequence) else ""
        raise InputError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}{held}")
    if len(prompts) != n:
        raise InputError(f"got {n} images but {len(prompts)} prompts")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise InputError(f"prompt {i}: empty prompt")
    return list(prompts)


def score_in_batches(run: Callable[[list[torch.Tensor], list[str]], torch.Tensor], rubric: Rubric, images,
                     prompts: Sequence[str] | str, batch_size: int = 32, progress: bool = False) -> ScoreDistribution:
    """images: PIL / paths / uint8 arrays / float tensors in [0, 1]; `run` maps one batch of [0, 1]
    tensors and prompts to probs (b, D, K). Images are decoded one batch at a time."""
    if not isinstance(images, (list, tuple)) and not (isinstance(images, torch.Tensor) and images.dim() == 4):
        images = [images]
    n = len(images)
    prompts = check_prompts(prompts, n)
    if n == 0:
        raise InputError("no images to score")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        # disable=None: a bar on a terminal only, so that a log or a pipe gets just results and errors.
        starts = tqdm(starts, total=(n + batch_size - 1) // batch_size, desc="scoring", unit="batch", disable=None)
    chunks = [run(load_images(images[s : s + batch_size], start=s), list(prompts[s : s + batch_size])).float().cpu()
              for s in starts]
    return ScoreDistribution(torch.cat(chunks), rubric)
