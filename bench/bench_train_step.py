"""Seconds per SFT training step, side by side, with and without the training path's own measures.

On the CPU (the default): as Hugging Face and glibc run it ("hf_default": glibc's allocator
defaults, the vision tower's "sdpa" loop over images, the backbone's per-row M-RoPE loop),
"keep_freed_memory" (`zreward.training.allocator`, what `zreward train sft` applies on the CPU),
"keep_freed_memory+packed_attention" (+ `zreward.models.vision_attention`) and "cpu_default" (+ the
template's position table, `zreward.models.positions`: today's CPU path), and "cpu_default+bf16_autocast"
(the forward under torch.autocast("cpu", bfloat16), to see whether a CPU with AMX gains from it).
On a GPU (--device cuda): "hf_default" (the vision loop, the M-RoPE loop, batches preprocessed by
the loader), "packed+positions" (both host-side loops removed) and "gpu_default" (+ images
preprocessed on the device, `zreward.training.device_images`: today's GPU path). Each step there
ends with a device synchronize; --groups-per-batch sets the batch.
A step is what the Trainer runs: `SFTStudentTrainer.compute_loss` (forward and the recipe's losses),
backward, gradient clipping and the AdamW step, on real batches of whole prompt groups. Allocator settings are per process, so
each setting runs in its own worker process; the settings alternate over --rounds, and the figures
are medians over every timed step of a setting. Each worker first runs each of its batches once
untimed (new shapes pay one-off costs). Kernel (system) CPU time is reported beside user time.

    python bench/bench_train_step.py --data data/shapeworld/train            # the embedded default model
    python bench/bench_train_step.py --data DIR --model CKPT --rounds 3 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utils import ROOT, append_json, record_header  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "train_step.json"
# name -> (keep freed memory, packed vision attention, template positions, images preprocessed on the device,
#          forward under bf16 autocast)
CPU_SETTINGS = {"hf_default": (False, False, False, False, False), "keep_freed_memory": (True, False, False, False, False),
                "keep_freed_memory+packed_attention": (True, True, False, False, False),
                "cpu_default": (True, True, True, False, False),
                "cpu_default+bf16_autocast": (True, True, True, False, True)}
GPU_SETTINGS = {"hf_default": (False, False, False, False, False), "packed+positions": (False, True, True, False, False),
                "gpu_default": (False, True, True, True, False)}
SETTINGS = {"cpu": CPU_SETTINGS, "cuda": GPU_SETTINGS}


def worker(setting: str, data_dir: str, model_arg: str | None, steps: int, groups: int, device: str) -> dict:
    keep, packed, positions, on_device, bf16 = SETTINGS[device][setting]
    if keep:
        from zreward.training.allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("error: keep_freed_memory is not available here (needs Linux with glibc)")
    import torch

    from zreward.data.dataset import load_dataset
    from zreward.models import load_model
    from zreward.training import sft_config_for
    from zreward.training.sft import GroupCollator, PromptGroups, SFTStudentTrainer

    data = load_dataset(data_dir, check_images=False)
    model = load_model(model_arg, rubric=data.rubric, device=device)
    if not packed:  # back to the vision tower's own per-image loop
        model.backbone.model.visual.config._attn_implementation = "sdpa"
    model._positions.enabled = positions
    model.train()
    cfg = sft_config_for(None, init=model_arg, groups_per_batch=groups, disable_tqdm=True)
    prompt_groups = PromptGroups(data, cfg.max_images_per_group)
    collator = GroupCollator(model, prompt_groups, caption=cfg.caption_loss_weight > 0, images_on_device=on_device)
    trainer = SFTStudentTrainer(model=model, args=cfg, train_dataset=prompt_groups, data_collator=collator)
    trainer.create_optimizer()
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # the Trainer's scratch folder; nothing is saved
    t0 = time.perf_counter()
    batches = [collator([prompt_groups[(i * 97 + j) % len(prompt_groups)] for j in range(groups)])
               for i in range(steps)]
    collate_seconds = (time.perf_counter() - t0) / steps  # one loader process's time for a batch

    def step(batch: dict) -> None:
        # What the Trainer does per step: the batch to the device (pinned, as its loader does), loss,
        # backward, clipping, AdamW; synchronized so the time is the device's too.
        inputs = {k: (v.pin_memory() if device == "cuda" else v).to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = trainer.compute_loss(model, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    for batch in batches:  # untimed: one-off costs of each new shape
        step(batch)
    times, cpu0 = [], os.times()
    for batch in batches:
        t0 = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - t0)
    cpu1 = os.times()
    return {"setting": setting, "step_seconds": times, "collate_seconds": collate_seconds,
            "user_seconds": cpu1.user - cpu0.user,
            "system_seconds": cpu1.system - cpu0.system, "images_per_step": statistics.mean(
                int(b["input_ids"].shape[0]) for b in batches), "threads": torch.get_num_threads()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="A dataset directory (points.jsonl) to draw batches from.")
    p.add_argument("--model", default=None, help="Checkpoint (default: the embedded default model).")
    p.add_argument("--rounds", type=int, default=3, help="Worker processes per setting, alternating.")
    p.add_argument("--steps", type=int, default=6, help="Timed steps per worker (distinct batches).")
    p.add_argument("--groups-per-batch", type=int, default=8)
    p.add_argument("--device", default="cpu", choices=list(SETTINGS), help="Where the steps run.")
    p.add_argument("--settings", default=None,
                   help="Comma-separated settings to run (default: all of the device's; hf_default is always run, "
                        "as the baseline).")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON list the result is appended to ('' skips).")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    settings = SETTINGS[args.device]
    if args.settings:
        unknown = set(args.settings.split(",")) - set(settings)
        if unknown:
            sys.exit(f"error: unknown settings {sorted(unknown)}; {args.device} has {list(settings)}")
        settings = {k: v for k, v in settings.items() if k == "hf_default" or k in args.settings.split(",")}
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.model, args.steps, args.groups_per_batch, args.device)))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but torch sees no CUDA device")
    if not (Path(args.data) / "points.jsonl").is_file():
        sys.exit(f"error: {args.data}: no points.jsonl (a dataset directory in the documented format)")
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    cmd = [sys.executable, __file__, "--data", args.data, "--steps", str(args.steps), "--device", args.device,
           "--groups-per-batch", str(args.groups_per_batch)] + (["--model", args.model] if args.model else [])
    for r in range(args.rounds):
        for setting in settings:
            res = subprocess.run(cmd + ["--worker", setting], capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"error: {setting} worker failed: {res.stderr.strip().splitlines()[-1]}")
            runs[setting].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.rounds} {setting}: median "
                  f"{statistics.median(runs[setting][-1]['step_seconds']):.3f} s/step", file=sys.stderr)
    summary = {}
    for setting, rs in runs.items():
        steps = [t for r in rs for t in r["step_seconds"]]
        cpu = sum(r["user_seconds"] + r["system_seconds"] for r in rs)
        summary[setting] = {"median_step_seconds": statistics.median(steps), "min_step_seconds": min(steps),
                            "max_step_seconds": max(steps), "timed_steps": len(steps),
                            "system_share_of_cpu": sum(r["system_seconds"] for r in rs) / cpu,
                            "images_per_step": rs[0]["images_per_step"], "threads": rs[0]["threads"],
                            "collate_seconds_per_image": statistics.median(
                                r["collate_seconds"] for r in rs) / rs[0]["images_per_step"]}
        summary[setting]["images_per_second"] = summary[setting]["images_per_step"] / summary[setting]["median_step_seconds"]
    base = summary["hf_default"]["median_step_seconds"]
    for s in summary.values():
        s["speedup"] = base / s["median_step_seconds"]
    record = record_header("bench_train_step", vars(args) | {"worker": None}) | {"results": summary}
    print(f"{'setting':<36}{'s/step (median)':>16}{'img/s':>8}{'speed-up':>10}{'system CPU share':>18}"
          f"{'collate ms/img':>16}")
    for setting, s in summary.items():
        print(f"{setting:<36}{s['median_step_seconds']:>16.3f}{s['images_per_second']:>8.0f}{s['speedup']:>9.2f}x"
              f"{s['system_share_of_cpu']:>18.1%}{1e3 * s['collate_seconds_per_image']:>16.2f}")
    if args.out:
        append_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
