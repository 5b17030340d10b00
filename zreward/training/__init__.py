"""Training recipes on standard trainers (Hugging Face Trainer / TRL, PEFT, accelerate)."""

from __future__ import annotations

from zreward.training.sft_config import SCRATCH_PREFIX, SFTStudentConfig

# Peak learning rate of the student. Higher rates (3e-4 and up) collapse a fresh tiny model onto the
# marginal within a few steps (bench/results/default_model.json has the measurements).
LR = 2e-4


def default_vision_warmup_minutes(init, max_minutes) -> float:
    """A fresh tiny model gets 30% of --max-minutes; a loaded model, or a run without a budget, none."""
    if init is not None or not max_minutes:
        return 0.0
    return 0.3 * max_minutes


def default_workers() -> int:
    """Data-loader workers: none on the CPU (they would take cores from the model), a few beside a GPU."""
    import os

    import torch

    return min(4, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0


def sft_config_for(out, *, init=None, epochs=30.0, lr=LR, backbone="qwen2_vl", lora_r=0,
                   pair_loss_weight=0.5, max_minutes=None, seed=0, vision_warmup_minutes=None, workers=None,
                   **overrides) -> SFTStudentConfig:
    """The recipe's defaults (the ones the embedded model was trained with), ready for the Trainer."""
    import tempfile

    import torch

    kwargs = dict(
        output_dir=tempfile.mkdtemp(prefix=SCRATCH_PREFIX), init=init, backbone=backbone, lora_r=lora_r,
        pair_loss_weight=pair_loss_weight, max_minutes=max_minutes, seed=seed, num_train_epochs=epochs,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, weight_decay=0.01,
        per_device_train_batch_size=8, save_strategy="no", report_to="none", remove_unused_columns=False,
        dataloader_num_workers=default_workers() if workers is None else workers, logging_steps=50, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False, max_grad_norm=1.0,
        vision_warmup_minutes=(default_vision_warmup_minutes(init, max_minutes) if vision_warmup_minutes is None
                               else vision_warmup_minutes),
    )
    kwargs["seed_model"] = seed  # --seed also draws a fresh model's initial weights
    kwargs.update(overrides)
    cfg = SFTStudentConfig(**kwargs)
    # Under torchrun / accelerate launch a step's groups are split over the processes.
    if cfg.groups_per_batch % cfg.world_size:
        from zreward.errors import InputError

        raise InputError(f"--groups-per-batch {cfg.groups_per_batch} does not split evenly over {cfg.world_size} processes")
    cfg.per_device_train_batch_size = cfg.groups_per_batch // cfg.world_size
    return cfg


def train_sft(*args, **kwargs):
    from zreward.training.sft import train_sft as _train

    return _train(*args, **kwargs)


__all__ = ["LR", "SFTStudentConfig", "default_vision_warmup_minutes", "default_workers", "sft_config_for", "train_sft"]
