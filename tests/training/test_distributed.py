"""Multi-process training: ranks share the budget decisions, and `zreward train sft` runs under torchrun."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from tests.markers import slow


def _rank(rank: int, port: int, out: str) -> None:
    import time

    import torch.distributed as dist
    from transformers import TrainerControl

    from zreward.training.distributed import agreed_max, any_rank, is_main_process, world_size
    from zreward.training.sft import TimeLimit

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    limit = TimeLimit(minutes=60)
    if rank == 0:
        limit.deadline = time.monotonic() - 1  # only rank 0's clock has run out
    control = TrainerControl()
    limit.on_step_end(None, None, control)
    result = {"max": agreed_max(3.5 if rank else -2.0), "any": any_rank(rank == 1), "none": any_rank(False),
              "main": is_main_process(), "world": world_size(), "stop": control.should_training_stop}
    with open(os.path.join(out, f"{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_ranks_agree_on_budget_decisions(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r["max"] == 3.5 and r["any"] is True and r["none"] is False and r["world"] == 2
        assert r["stop"] is True  # both ranks stop at the step where one rank ran out of time
    assert (r0["main"], r1["main"]) == (True, False)


def test_single_process_needs_no_process_group():
    from zreward.training.distributed import agreed_max, any_rank, is_main_process, wait_for_main, world_size

    assert agreed_max(1.25) == 1.25 and any_rank(True) and not any_rank(False)
    assert is_main_process() and world_size() == 1
    wait_for_main()


@slow
def test_train_sft_under_torchrun(tmp_path):
    """Two processes on a budget that cuts a 1000-epoch plan short: this deadlocked before the ranks
    agreed on the plan and on when to stop. Only the main process saves and reports."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(32):
        b = i / 31
        Image.fromarray(np.full((40, 56, 3), int(b * 255), np.uint8)).save(root / "images" / f"{i}.png")
        s = 1 + round(b * 8) / 2
        rows.append({"prompt": f"a grey card number {i // 4}", "image": f"images/{i}.png",
                     "scores": {"fidelity": [s, s], "aesthetics": [s]}})
    (root / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "model"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "zreward.cli", "train", "sft", "--data", str(root), "--out", str(out), "--epochs", "1000",
           "--max-minutes", "0.4", "--groups-per-batch", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("saved ") == 1, r.stdout
    log = json.loads((out / "training_log.json").read_text())
    assert log["processes"] == 2 and 0 < log["steps"] < 1000

    from zreward import load

    scores = load(str(out)).score([str(root / "images" / "0.png")], ["a grey card number 0"])
    assert torch.isfinite(scores.mean).all()


def test_groups_must_split_over_processes(monkeypatch):
    from transformers import TrainingArguments

    from zreward.errors import InputError
    from zreward.training import sft_config_for

    monkeypatch.setattr(TrainingArguments, "world_size", property(lambda self: 3))
    with pytest.raises(InputError, match="does not split evenly over 3 processes"):
        sft_config_for("unused", groups_per_batch=8)
