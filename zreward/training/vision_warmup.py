"""Vision warm-up: trains a fresh vision tower on the score histograms before the SFT student.

A from-scratch VLM learns slowly end to end: the score slots first learn the marginal, and the
image signal has to travel through the merger and every language-model layer. This stage trains
the vision tower + merger alone (no language model, about 10x cheaper per image) with a temporary
linear probe on the mean and max of the image tokens, predicting every dimension's histogram with the
same soft-label CE as the student. The probe is thrown away; the warmed-up tower stays in the
model. It runs on the Hugging Face Trainer like every other stage.
"""

from __future__ import annotations

import math
import shutil
import time

import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import Trainer

from zreward.data.dataset import PreferenceDataset
from zreward.images import load_image
from zreward.models import ZRewardModel
from zreward.models.processing import preprocess_images
from zreward.training.device_images import attach_pixels, stack_uint8
from zreward.training.losses import soft_label_ce


class VisionScoreProbe(nn.Module):
    """The model's vision tower + merger, mean- and max-pooled, then a linear map to (D, K) logits."""

    def __init__(self, model: ZRewardModel):
        super().__init__()
        self.backbone = model.backbone.model
        self.image_size, self.family = model.image_size, model.family
        self.dims, self.bins = model.rubric.num_dimensions, len(model.rubric.values)
        width = model.backbone.get_output_embeddings().weight.shape[1]
        self.probe = nn.Linear(2 * width, self.dims * self.bins)
        nn.init.zeros_(self.probe.weight)
        nn.init.zeros_(self.probe.bias)

    def forward(self, target, target_mask, pixel_values=None, image_grid_thw=None, images=None):
        if images is not None:  # decoded uint8 images, preprocessed here on the device
            inputs = attach_pixels({"images": images}, self.image_size, self.family)
            pixel_values, image_grid_thw = inputs["pixel_values"], inputs["image_grid_thw"]
        tokens = self.backbone.get_image_features(pixel_values, image_grid_thw).pooler_output
        pooled = torch.stack([torch.cat([t.mean(0), t.amax(0)]) for t in tokens])
        logits = self.probe(pooled).view(-1, self.dims, self.bins).float()
        return {"loss": soft_label_ce(logits.softmax(-1), target, target_mask)}


class _Points(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class _PointCollator:
    """Points -> a CPU batch; holds no model, so it runs in data-loader workers. With images_on_device
    it ships the decoded uint8 images for the probe to preprocess on the device."""

    def __init__(self, model: ZRewardModel, data: PreferenceDataset, images_on_device: bool = False):
        self.image_size, self.family, self.data = model.image_size, model.family, data
        self.hist, self.mask = data.histograms()
        self.images_on_device = images_on_device

    def __call__(self, idx: list[int]) -> dict:
        images = [load_image(self.data.points[i].image) for i in idx]
        batch = {"target": self.hist[idx], "target_mask": self.mask[idx]}
        stacked = stack_uint8(images) if self.images_on_device else None
        if stacked is not None:
            return batch | {"images": stacked}
        pixel_values, grid = preprocess_images(images, self.image_size, self.family)
        return batch | {"pixel_values": pixel_values, "image_grid_thw": grid.contiguous()}


def warm_up_vision(model: ZRewardModel, data: PreferenceDataset, args, minutes: float, lr: float,
                   batch_size: int | None = None) -> dict:
    """Trains model's vision tower for `minutes` of wall time (the whole cosine schedule fits in it), or
    for args.num_train_epochs passes over the images when those take less.

    args: the student's TrainingArguments; the stage runs on a copy with its own learning rate,
    batch size and scratch folder. Returns a log.
    """
    import tempfile
    from dataclasses import replace

    from zreward.training.distributed import agreed_max
    from zreward.training.sft import TimeLimit, images_on_device

    batch_size = batch_size or args.vision_warmup_batch_size
    probe = VisionScoreProbe(model).to(model.device)
    collator = _PointCollator(model, data, images_on_device=images_on_device(args))
    points = _Points(len(data.points))
    per_step = agreed_max(_seconds_per_step(probe, collator, batch_size, len(points), args.dataloader_num_workers))
    steps = max(1, int(minutes * 60 * 0.92 / per_step))
    # A small dataset is done sooner: at most as many passes over its images as the student makes over its groups.
    steps = min(steps, max(1, math.ceil(args.num_train_epochs * len(points) / batch_size)))
    # HF rounds a warm-up ratio up to 1 step, the whole of a 1-step stage (trained at lr 0): none then.
    stage_args = replace(args, output_dir=tempfile.mkdtemp(prefix="zreward-warmup-"), max_steps=steps,
                         learning_rate=lr, warmup_steps=args.warmup_steps if steps > 1 else 0,
                         per_device_train_batch_size=max(1, batch_size // args.world_size))
    trainer = Trainer(model=probe, args=stage_args, train_dataset=points, data_collator=collator,
                      callbacks=[TimeLimit(minutes)])
    t0 = time.monotonic()
    try:
        result = trainer.train()
    finally:
        shutil.rmtree(stage_args.output_dir, ignore_errors=True)
    return {"loss": result.training_loss, "steps": result.global_step, "minutes": (time.monotonic() - t0) / 60}


def _seconds_per_step(probe: VisionScoreProbe, collator: _PointCollator, batch: int, n: int, workers: int) -> float:
    from zreward.training.sft import seconds_per_step

    device = probe.probe.weight.device

    def run_batch(inputs: dict) -> None:
        probe(**{k: v.to(device) for k, v in inputs.items()})["loss"].backward()

    per_step = seconds_per_step(lambda i: collator([(i * 97 + j) % n for j in range(batch)]), run_batch, device,
                                workers)
    probe.zero_grad(set_to_none=True)
    return per_step * 1.1
