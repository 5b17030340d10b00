"""Multi-process training (`torchrun` / `accelerate launch`): the decisions every rank must share.

The Trainer handles gradients (DDP). What it does not know is our wall-clock budget: each rank times
its own steps and checks its own clock, and ranks that plan or stop at different steps deadlock in
the next all-reduce. So every such decision goes through `agreed_max`; a single process skips it all.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def agreed_max(value: float) -> float:
    """The largest of the ranks' values, returned on every rank (the value itself in one process)."""
    if not is_distributed():
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one."""
    return agreed_max(1.0 if flag else 0.0) > 0


def wait_for_main() -> None:
    """Ranks meet here, e.g. so that none returns before the main process has saved the model."""
    if is_distributed():
        dist.barrier()
