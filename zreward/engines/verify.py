"""Parity of an engine with the PyTorch model: the sample it is measured on and the measurements.

The sample mixes ShapeWorld scenes (the images the models are trained on, rendered in memory from
the package's own generator) with random-pixel images (inputs no training set resembles), at
assorted sizes so resizing runs, and prompts from one word up to the template's token cap so the
whole text-length range of the graph is exercised.
"""

from __future__ import annotations

import numpy as np
import torch

from zreward.testing import BATCH_INVARIANCE_ATOL, ENGINE_PROBS_ATOL, TOLERANCES

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parity_atol(precision: str) -> float:
    """Max |probs difference| allowed between an engine and the PyTorch model at `precision`."""
    return ENGINE_PROBS_ATOL if precision == "fp32" else TOLERANCES[PRECISIONS[precision]][0]


def sample_images(n_shapes: int, n_random: int, image_size: int = 112, seed: int = 0):
    """-> (images: list of (3, H, W) float in [0, 1], prompts: list[str]), deterministic from `seed`."""
    from zreward.data.shapeworld import (
        build_scene,
        degrade,
        prompt_text,
        render,
        sample_failures,
        sample_spec,
    )

    rng = np.random.default_rng(seed)
    images, prompts = [], []
    for _ in range(n_shapes):
        spec = sample_spec(rng)
        failures = sample_failures(rng, spec)
        scene = build_scene(spec, failures, rng, image_size, ood=False)
        img = np.asarray(degrade(render(scene, image_size), failures, rng).convert("RGB"))
        images.append(torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255)
        prompts.append(prompt_text(spec))
    gen = torch.Generator().manual_seed(seed)
    words = "red green blue circle square triangle left of above the a small large two three".split()
    for i in range(n_random):
        h, w = (int(v) for v in torch.randint(24, 2 * image_size, (2,), generator=gen))
        images.append(torch.rand(3, h, w, generator=gen))
        # One word, medium, and far past the token cap (the encoder truncates it): every length.
        n_words = (1, 12, 400)[i % 3]
        prompts.append(" ".join(words[int(j)] for j in torch.randint(len(words), (n_words,), generator=gen)))
    return images, prompts


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def batch_invariance(score, images, prompts, batch_size: int) -> float:
    """Max |probs difference| between scoring in batches of `batch_size` and one image at a time.

    score(images, prompts) -> probs (B, D, K).
    """
    batched = torch.cat([score(images[s:s + batch_size], prompts[s:s + batch_size])
                         for s in range(0, len(images), batch_size)])
    single = torch.cat([score(images[i:i + 1], prompts[i:i + 1]) for i in range(len(images))])
    return max_abs(batched, single)


def check(name: str, value: float, limit: float, where: str) -> None:
    """Raises InputError when a parity figure is over its limit (the engine is not written)."""
    from zreward.errors import InputError

    if not value <= limit:  # NaN fails too
        raise InputError(f"{where}: {name} is {value:.3g}, above the limit {limit:g}; the engine was not written")


__all__ = ["BATCH_INVARIANCE_ATOL", "PRECISIONS", "batch_invariance", "check", "max_abs", "parity_atol",
           "sample_images"]
