"""The SFT student on the Hugging Face Trainer: soft-label CE on annotator histograms + Thurstone pairs.

Batches are made of whole prompt groups (every image of a prompt, capped), so the pair loss sees
the same-prompt pairs that HPA is measured on. Only `compute_loss` is overridden.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset
from transformers import SchedulerType, Trainer, TrainerCallback

from zreward.data.dataset import PreferenceDataset
from zreward.errors import InputError
from zreward.images import load_image
from zreward.io import check_output_dir
from zreward.models import ZRewardModel, build_tiny_model, load_model
from zreward.models.reward_model import SPEC_FILE
from zreward.training.device_images import attach_pixels, stack_uint8
from zreward.training.distributed import agreed_max, any_rank, is_main_process, wait_for_main, world_size
from zreward.training.losses import next_token_loss, soft_label_ce, thurstone_pair_loss
from zreward.training.sft_config import SCRATCH_PREFIX, SFTStudentConfig


class PromptGroups(Dataset):
    """Items are prompt groups of a PreferenceDataset's points (indices into dataset.points)."""

    def __init__(self, data: PreferenceDataset, max_per_group: int):
        if not data.points:
            raise InputError(f"{data.root}: no scored points to train on")
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(data.points):
            groups.setdefault(p.prompt, []).append(i)
        # Large groups are split into chunks (not truncated), so every point is seen each epoch.
        self.groups = [idx[s : s + max_per_group] for idx in groups.values() for s in range(0, len(idx), max_per_group)]
        self.data = data
        self.hist, self.mask = data.histograms()
        self.overall = data.human_overall()

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        return {"group": i, "points": self.groups[i]}


class GroupCollator:
    """Prompt groups -> a batch on the CPU. It holds the model's InputPreparer, not the model, so it
    runs in data-loader workers while the model trains on a GPU. With images_on_device it ships the
    decoded images (uint8 "images") instead of pixel_values, for the step to preprocess on the device
    (zreward.training.device_images)."""

    def __init__(self, model: ZRewardModel, groups: PromptGroups, caption: bool = False, explain_tokens: int = 0,
                 images_on_device: bool = False):
        self.prepare, self.encoder, self.rubric = model.preparer, model.encoder, model.rubric
        self.g, self.caption, self.explain_tokens = groups, caption, explain_tokens
        self.images_on_device = images_on_device

    def __call__(self, items: list[dict]) -> dict:
        idx = [j for it in items for j in it["points"]]
        pts = [self.g.data.points[j] for j in idx]
        images = [load_image(p.image) for p in pts]
        stacked = stack_uint8(images) if self.images_on_device else None
        if stacked is None:
            batch = self.prepare(images, [p.prompt for p in pts], device="cpu")
        else:
            layout = self.encoder([p.prompt for p in pts])
            batch = {"input_ids": layout.input_ids, "attention_mask": layout.attention_mask,
                     "mm_token_type_ids": layout.mm_token_type_ids, "read_positions": layout.read_positions,
                     "images": stacked}
        batch["target"] = self.g.hist[idx]
        batch["target_mask"] = self.g.mask[idx]
        batch["human_overall"] = self.g.overall[idx].float()
        batch["group"] = torch.tensor([it["group"] for it in items for _ in it["points"]])
        if self.explain_tokens > 0 and any(p.rationale for p in pts):
            self._append_explanations(batch, pts)
        if self.caption:
            batch["caption_mask"] = self._caption_mask(pts, batch["input_ids"].shape[1])
        return {k: v.contiguous() for k, v in batch.items()}  # expanded views cannot be pinned

    def _append_explanations(self, batch: dict, pts) -> None:
        """Appends each rationale's first tokens after the row's last template token (after every slot)
        and sets batch["explain_mask"]: (B, L) True at the positions that predict one of them."""
        ids, attn = batch["input_ids"], batch["attention_mask"]
        lengths = attn.sum(1).tolist()
        extra = [self.encoder.explanation_ids(p.rationale, self.explain_tokens) if p.rationale else [] for p in pts]
        length = max(n + len(e) for n, e in zip(lengths, extra))
        new_ids = ids.new_full((len(pts), length), self.encoder.pad_id)
        new_attn, explain = attn.new_zeros((len(pts), length)), torch.zeros(len(pts), length, dtype=torch.bool)
        for i, (n, e) in enumerate(zip(lengths, extra)):
            new_ids[i, :n] = ids[i, :n]
            new_ids[i, n : n + len(e)] = torch.tensor(e, dtype=ids.dtype)
            new_attn[i, : n + len(e)] = 1
            explain[i, n - 1 : n - 1 + len(e)] = True  # position t predicts token t + 1
        batch["input_ids"], batch["attention_mask"] = new_ids, new_attn
        batch["mm_token_type_ids"] = (new_ids == self.encoder.image_id).to(batch["mm_token_type_ids"].dtype)
        batch["explain_mask"] = explain

    def _caption_mask(self, pts, length: int) -> torch.Tensor:
        """(B, L) True at the positions that predict a prompt token, for images rated well aligned.

        Without an "alignment" dimension in the rubric every image counts.
        """
        r = self.rubric
        good = r.low + 0.75 * (r.high - r.low)
        mask = torch.zeros(len(pts), length, dtype=torch.bool)
        for i, p in enumerate(pts):
            rated = p.scores.get("alignment")
            if rated is not None and sum(rated) / len(rated) < good:
                continue  # the prompt does not describe this image
            start, end = self.encoder.prompt_span(p.prompt)
            mask[i, start - 1 : end - 1] = True  # position t predicts token t + 1
        return mask


class CosineSchedule:
    """The Trainer's cosine-with-warm-up learning-rate factor (same formula), with a `total` that a
    wall-clock budget can re-plan mid-run (see TimeLimit)."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


class SFTStudentTrainer(Trainer):
    # Steps the budget is expected to fit (set by _fit_schedule_to_budget): the warm-up is a share of
    # these, not of max_steps, which is only an upper bound when TimeLimit re-plans.
    expected_steps: int | None = None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.args.lr_scheduler_type == SchedulerType.COSINE:
            planned = min(num_training_steps, self.expected_steps or num_training_steps)
            # At most half the steps: a warm-up as long as the run (1 step of 1) would train at lr 0 throughout.
            warmup = min(self.args.get_warmup_steps(planned), planned // 2)
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, CosineSchedule(warmup, num_training_steps))
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target, mask = inputs.pop("target"), inputs.pop("target_mask")
        human, group = inputs.pop("human_overall"), inputs.pop("group")
        caption, explain = inputs.pop("caption_mask", None), inputs.pop("explain_mask", None)
        core = model.module if hasattr(model, "module") else model
        attach_pixels(inputs, core.image_size, core.family)
        probs, hidden = model(**inputs, return_hidden=True)
        loss = soft_label_ce(probs, target, mask)
        for text_mask, weight in ((caption, self.args.caption_loss_weight), (explain, self.args.explanation_loss_weight)):
            if text_mask is not None and text_mask.any():
                logits = core.backbone.get_output_embeddings()(hidden[text_mask])
                loss = loss + weight * next_token_loss(logits, inputs["input_ids"], text_mask)
        w = self.args.pair_loss_weight
        if w > 0:
            # Pairs are ranked on the human overall mean, so images missing a dimension still pair.
            loss = loss + w * thurstone_pair_loss(probs, core.bin_values, core.bin_values.new_tensor(core.rubric.weights),
                                                  group, human)
        return (loss, probs) if return_outputs else loss


# Kept from --max-minutes for what the estimates miss (the Trainers' set-up) and what follows the
# student (the validation pass, saving): a share of the budget plus a few seconds.
FINISH_RESERVE, FINISH_RESERVE_MINUTES = 0.04, 0.05


class TimeLimit(TrainerCallback):
    """Stops training after a wall-clock budget, every rank at the same step.

    When the run's learning rate follows a CosineSchedule it also re-plans it once, early on, from the
    step rate measured in the run itself, so that the cosine reaches zero at the deadline: the estimate
    made before training (a few timed steps) is only an upper bound on the steps. Measured on ShapeWorld
    it was 1.3-1.5x too slow (it times fresh tensor shapes and a few batches), which left a third of
    the budget unused.
    """

    # The step rate is measured between these fractions of max_steps (after the first, slower steps).
    MEASURE_FROM, MEASURE_TO, MARGIN = 0.02, 0.06, 0.97

    def __init__(self, minutes: float):
        self.deadline = time.monotonic() + 60 * minutes
        self.stop_at: int | None = None
        self.replanned: int | None = None
        self._mark: float | None = None

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        now = time.monotonic()
        schedule = getattr(lr_scheduler, "lr_lambdas", [None])[0]
        if isinstance(schedule, CosineSchedule) and self.replanned is None:
            self._replan(state, schedule, now)
        late = now > self.deadline or (self.stop_at is not None and state.global_step >= self.stop_at)
        if any_rank(late):
            control.should_training_stop = True

    def _replan(self, state, schedule: CosineSchedule, now: float) -> None:
        start = max(3, round(self.MEASURE_FROM * state.max_steps))
        end = max(start + 10, round(self.MEASURE_TO * state.max_steps))
        if end >= state.max_steps // 2:
            self.replanned = state.max_steps  # too short a run to measure and still re-plan
        elif state.global_step == start:
            self._mark = now
        elif state.global_step == end and self._mark is not None:
            rate = (now - self._mark) / (end - start)
            fits = end + int(self.MARGIN * (self.deadline - now) / rate)
            total = int(-agreed_max(-min(fits, state.max_steps)))  # the slowest rank's plan
            schedule.total = max(total, schedule.warmup + 1, end + 1)
            self.stop_at = self.replanned = schedule.total


def images_on_device(cfg: SFTStudentConfig) -> bool:
    """cfg.images_on_device, or by default: whenever training runs off the CPU."""
    return cfg.images_on_device if cfg.images_on_device is not None else torch.device(cfg.device).type != "cpu"


def _init_model(cfg: SFTStudentConfig, data: PreferenceDataset) -> ZRewardModel:
    if cfg.init is None and cfg.widen > 1:
        raise InputError("--widen widens a trained model: give it --init")
    if cfg.init is None:
        return build_tiny_model(
            cfg.backbone, rubric=data.rubric, image_size=cfg.image_size, corpus=data.prompts,
            seed=cfg.seed_model, hidden=cfg.hidden_size, layers=cfg.num_layers,
            vision_hidden=cfg.vision_hidden_size, vision_depth=cfg.vision_depth,
        )
    model = load_model(cfg.init, rubric=data.rubric)
    if cfg.widen > 1:
        from zreward.models.widen import widen_model

        model = widen_model(model, cfg.widen, seed=cfg.seed_model)
    if cfg.image_size is not None and cfg.image_size != model.image_size:
        # A new resolution for a trained model: every weight carries over (patches keep their size, the
        # vision tower's 2-D rotary positions extend to the larger grid); only the image-token count changes.
        model = ZRewardModel(model.backbone, model.tokenizer, model.rubric, cfg.image_size, model.template,
                             model.temperature)
    return model


def _apply_lora(model: ZRewardModel, cfg: SFTStudentConfig) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      target_modules=[m.strip() for m in cfg.lora_target_modules.split(",") if m.strip()])
    inject_adapter_in_model(lora, model.backbone)
    for name, p in model.named_parameters():
        # The score rows live in lm_head, which LoRA does not adapt: keep it trainable.
        p.requires_grad = "lora_" in name or "lm_head" in name


def merge_lora(model: ZRewardModel) -> None:
    """Folds injected LoRA adapters into the base weights, leaving a plain HF backbone to save."""
    from peft.tuners.lora import LoraLayer

    for parent in list(model.backbone.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, child_name, child.get_base_layer())


def seconds_per_step(make_batch, run_batch, device: torch.device, workers: int, n: int = 3) -> float:
    """Wall seconds per training step: the model's pass (forward + backward), plus the batch loading
    when the main process loads, or the loading spread over `workers` processes when that is slower.
    No first pass is timed: the model's pay one-off allocation and compile costs for each new shape, the
    loader's reads the images from disk (after the first epoch they come from the page cache)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    batches = [make_batch(i) for i in range(n)]
    t0 = time.monotonic()
    for i in range(n):
        make_batch(i)
    load = (time.monotonic() - t0) / n
    for batch in batches:
        # Each batch once untimed: a new shape pays one-off costs (oneDNN primitives, allocator growth)
        # that a long run pays once per shape, not once per step.
        run_batch(batch)
    sync()
    t0 = time.monotonic()
    for batch in batches:
        run_batch(batch)
    sync()
    compute = (time.monotonic() - t0) / n
    return compute + load if workers == 0 else max(compute, load / workers)


# How far beyond the pre-training estimate of the steps that fit a run may go once re-planned.
REPLAN_ROOM = 2


def _fit_schedule_to_budget(model, groups: PromptGroups, collator: GroupCollator, cfg: SFTStudentConfig) -> int:
    """Caps the run so that the whole cosine schedule fits in --max-minutes; returns the steps expected to fit.

    Times a few forward+backward passes (weights untouched). max_steps becomes an upper bound
    (REPLAN_ROOM x the estimate) that TimeLimit re-plans from the measured step rate; TimeLimit's
    deadline stays as a safety net.
    """
    steps_per_epoch = -(-len(groups) // (cfg.per_device_train_batch_size * cfg.world_size))
    planned = cfg.max_steps if cfg.max_steps > 0 else int(steps_per_epoch * cfg.num_train_epochs)

    def make_batch(i: int) -> dict:
        batch = collator([groups[(i * 97 + j) % len(groups)] for j in range(cfg.per_device_train_batch_size)])
        for key in ("target", "target_mask", "human_overall", "group", "caption_mask", "explain_mask"):
            batch.pop(key, None)
        return batch

    def run_batch(batch: dict) -> None:
        inputs = attach_pixels({k: v.to(model.device) for k, v in batch.items()}, model.image_size, model.family)
        model(**inputs).sum().backward()

    # The slowest rank sets the pace (and all ranks must plan the same number of steps).
    per_step = agreed_max(seconds_per_step(make_batch, run_batch, model.device, cfg.dataloader_num_workers))
    model.zero_grad(set_to_none=True)
    per_step *= 1.1  # the optimizer step and logging on top
    fits = max(int(cfg.max_minutes * 60 * 0.92 / per_step), 1)
    # TimeLimit re-plans from the run's own step rate, which can only shorten the run: leave it room
    # (tiny runs, too short to re-plan, keep the estimate).
    upper = REPLAN_ROOM * fits if REPLAN_ROOM * fits > 40 else fits
    if upper < planned:
        cfg.max_steps = upper
    return min(fits, planned)


def train_sft(train: PreferenceDataset, out: str | Path, cfg: SFTStudentConfig,
              val: PreferenceDataset | None = None) -> ZRewardModel:
    """Trains the SFT student on `train`, saves it to `out` (loadable with --model OUT)."""
    try:
        roots = [d.root for d in (train, val) if d is not None and getattr(d, "root", None)]
        check_output_dir(out, SPEC_FILE, "a zreward model", protected=roots)
        if val is not None:
            check_images_decode(val)  # found now, not after the whole training budget
        return _train_sft(train, out, cfg, val)
    finally:
        if Path(cfg.output_dir).name.startswith(SCRATCH_PREFIX):  # sft_config_for's scratch folder, also on errors
            shutil.rmtree(cfg.output_dir, ignore_errors=True)


def check_images_decode(data: PreferenceDataset) -> None:
    """Every image of a (validation) dataset decodes: a damaged file is named before training starts."""
    for image in sorted({str(p.image) for p in data.points} | {str(getattr(q, s)) for q in data.pairs
                                                               for s in ("image_a", "image_b")}):
        load_image(image)


def _train_sft(train: PreferenceDataset, out: str | Path, cfg: SFTStudentConfig,
               val: PreferenceDataset | None) -> ZRewardModel:
    start = time.monotonic()
    if torch.device(cfg.device).type == "cpu":
        from zreward.training.allocator import keep_freed_memory

        keep_freed_memory()  # activations reuse heap blocks instead of fresh mmaps every step
    # On the training device from the start: the warm-up moves only the vision tower, and the budget
    # estimates run before the Trainer would move the model.
    model = _init_model(cfg, train).to(cfg.device)
    model.train()
    log: dict = {}
    if cfg.vision_warmup_minutes > 0:
        from zreward.training.vision_warmup import warm_up_vision

        log["vision_warmup"] = warm_up_vision(model, train, cfg, cfg.vision_warmup_minutes, cfg.vision_warmup_lr)
    if cfg.max_minutes:
        # --max-minutes bounds the whole run: the model build, the warm-up and its estimate come off the
        # student's share, and a little is kept for the validation pass and saving.
        spent = agreed_max((time.monotonic() - start) / 60)  # the same budget, so the same plan, on every rank
        cfg.max_minutes = max(cfg.max_minutes * (1 - FINISH_RESERVE) - FINISH_RESERVE_MINUTES - spent, 0.1)
    if cfg.lora_r > 0:
        _apply_lora(model, cfg)
    groups = PromptGroups(train, cfg.max_images_per_group)
    collator = GroupCollator(model, groups, caption=cfg.caption_loss_weight > 0,
                             explain_tokens=cfg.explanation_tokens if cfg.explanation_loss_weight > 0 else 0,
                             images_on_device=images_on_device(cfg))
    callbacks, expected = [], None
    if cfg.max_minutes:
        callbacks.append(TimeLimit(cfg.max_minutes))
        expected = _fit_schedule_to_budget(model, groups, collator, cfg)
    trainer = SFTStudentTrainer(model=model, args=cfg, train_dataset=groups,
                                data_collator=collator, callbacks=callbacks)
    trainer.expected_steps = expected
    t0 = time.monotonic()
    result = trainer.train()
    minutes = (time.monotonic() - t0) / 60
    if cfg.lora_r > 0:
        merge_lora(model)
    model.eval()
    if not is_main_process():  # the main process saves and validates; the others wait until it has
        wait_for_main()
        return model
    log |= {"train_loss": result.training_loss, "steps": result.global_step, "minutes": minutes,
           "n_points": len(train.points), "n_groups": len(groups), "processes": world_size()}
    if callbacks:
        log["planned_steps"] = {"estimate": expected, "upper_bound": trainer.state.max_steps,
                                "replanned": callbacks[0].replanned}
    if val is not None and val.points:
        from zreward.eval import evaluate

        log["val"] = evaluate(model, val, progress=False)
    # Last, in one atomic step: a run that fails or is interrupted before here leaves nothing at `out`.
    from zreward.eval.report import json_safe

    log_text = json.dumps(json_safe(log), indent=2, allow_nan=False)  # strict JSON: an undefined metric is null
    model.save_pretrained(out, extra_files={"training_log.json": log_text})
    wait_for_main()
    return model
