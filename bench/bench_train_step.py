"""Seconds per SFT training step, side by side: as Hugging Face and glibc run it by default, with
`zreward.training.allocator.keep_freed_memory` (what `zreward train sft` applies on the CPU), and with
that plus the packed vision attention (`zreward.models.vision_attention`, what every ZRewardModel uses).

Settings: "hf_default" (glibc's allocator defaults, the vision tower's "sdpa" loop over images),
"keep_freed_memory", "keep_freed_memory+packed_attention" (today's default).
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
# name -> (keep freed memory, packed vision attention)
SETTINGS = {"hf_default": (False, False), "keep_freed_memory": (True, False),
            "keep_freed_memory+packed_attention": (True, True)}


def worker(setting: str, data_dir: str, model_arg: str | None, steps: int, groups: int) -> dict:
    keep, packed = SETTINGS[setting]
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
    model = load_model(model_arg, rubric=data.rubric)
    if not packed:  # back to the vision tower's own per-image loop
        model.backbone.model.visual.config._attn_implementation = "sdpa"
    model.train()
    cfg = sft_config_for(None, init=model_arg, groups_per_batch=groups, disable_tqdm=True)
    prompt_groups = PromptGroups(data, cfg.max_images_per_group)
    collator = GroupCollator(model, prompt_groups, caption=cfg.caption_loss_weight > 0)
    trainer = SFTStudentTrainer(model=model, args=cfg, train_dataset=prompt_groups, data_collator=collator)
    trainer.create_optimizer()
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # the Trainer's scratch folder; nothing is saved
    batches = [collator([prompt_groups[(i * 97 + j) % len(prompt_groups)] for j in range(groups)])
               for i in range(steps)]

    def step(batch: dict) -> None:
        trainer.compute_loss(model, dict(batch)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    for batch in batches:  # untimed: one-off costs of each new shape
        step(batch)
    times, cpu0 = [], os.times()
    for batch in batches:
        t0 = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - t0)
    cpu1 = os.times()
    return {"setting": setting, "step_seconds": times, "user_seconds": cpu1.user - cpu0.user,
            "system_seconds": cpu1.system - cpu0.system, "images_per_step": statistics.mean(
                int(b["input_ids"].shape[0]) for b in batches), "threads": torch.get_num_threads()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="A dataset directory (points.jsonl) to draw batches from.")
    p.add_argument("--model", default=None, help="Checkpoint (default: the embedded default model).")
    p.add_argument("--rounds", type=int, default=3, help="Worker processes per setting, alternating.")
    p.add_argument("--steps", type=int, default=6, help="Timed steps per worker (distinct batches).")
    p.add_argument("--groups-per-batch", type=int, default=8)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON list the result is appended to ('' skips).")
    p.add_argument("--worker", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.model, args.steps, args.groups_per_batch)))
        return 0
    if not (Path(args.data) / "points.jsonl").is_file():
        sys.exit(f"error: {args.data}: no points.jsonl (a dataset directory in the documented format)")
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    cmd = [sys.executable, __file__, "--data", args.data, "--steps", str(args.steps),
           "--groups-per-batch", str(args.groups_per_batch)] + (["--model", args.model] if args.model else [])
    for r in range(args.rounds):
        for setting in SETTINGS:
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
                            "images_per_step": rs[0]["images_per_step"], "threads": rs[0]["threads"]}
    base = summary["hf_default"]["median_step_seconds"]
    for s in summary.values():
        s["speedup"] = base / s["median_step_seconds"]
    record = record_header("bench_train_step", vars(args) | {"worker": None}) | {"results": summary}
    print(f"{'setting':<36}{'s/step (median)':>16}{'speed-up':>10}{'system CPU share':>18}")
    for setting, s in summary.items():
        print(f"{setting:<36}{s['median_step_seconds']:>16.3f}{s['speedup']:>9.2f}x{s['system_share_of_cpu']:>18.1%}")
    if args.out:
        append_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
