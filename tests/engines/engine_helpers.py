"""Shared pieces of the engine tests: tiny models, a sample, and the PyTorch reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from zreward.engines.static import reference_probs
from zreward.engines.verify import sample_images


def sample(n_shapes: int = 3, n_random: int = 3, image_size: int = 112, seed: int = 1):
    """ShapeWorld + random-pixel images at assorted sizes, prompts of every length (a fresh seed)."""
    return sample_images(n_shapes, n_random, image_size, seed=seed)


def pytorch_probs(model, images, prompts, batch_size: int = 8) -> torch.Tensor:
    """probs (B, D, K) from the Hugging Face forward of the PyTorch model, in batches."""
    return torch.cat([reference_probs(model, model.prepare(images[s:s + batch_size], prompts[s:s + batch_size]))
                      for s in range(0, len(images), batch_size)]).cpu()


def copy_engine(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
