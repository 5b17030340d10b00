"""Shared benchmark utilities: timing (median and spread), peak memory, machine and version info, and
results appended to a JSON file with the commit and date."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from zreward.io import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent

MEMORY_METHOD = {
    "cpu": "peak of the bytes allocated by torch's CPU allocator during one call (running sum of the allocation "
           "and free events of torch.profiler with profile_memory=True), inputs excluded",
    "cuda": "torch.cuda.max_memory_allocated during one call minus the bytes allocated before it, inputs excluded",
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str, reps: int = 20, warmup: int = 3,
              max_seconds: float | None = None) -> dict:
    """Runs fn warmup + reps times; {"median_ms", "p10_ms", "p90_ms", "min_ms", "reps"}.

    CUDA calls are timed with events around each call (so host overhead between launches counts, as it
    does for a caller); CPU calls with perf_counter. max_seconds stops early (at least 3 reps).
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times, start = [], time.perf_counter()
    for i in range(reps):
        if device == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            fn()
            t1.record()
            t1.synchronize()
            times.append(t0.elapsed_time(t1))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and i >= 2 and time.perf_counter() - start > max_seconds:
            break
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * (len(times) - 1) + 0.5))]
    return {"median_ms": statistics.median(times), "p10_ms": q(0.1), "p90_ms": q(0.9), "min_ms": times[0],
            "reps": len(times)}


def peak_memory(fn: Callable[[], object], device: str) -> int:
    """Peak bytes allocated during one call of fn beyond what was allocated before (MEMORY_METHOD)."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    allocation = torch._C._profiler._ExtraFields_Allocation
    events = []

    def walk(nodes):
        for node in nodes:
            if isinstance(node.extra_fields, allocation) and node.extra_fields.device.type == "cpu":
                events.append((node.start_time_ns, node.extra_fields.alloc_size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return int(peak)


def git_commit() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--", "zreward",
                                                                          "csrc", "bench"))}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {"hostname": platform.node(), "platform": platform.platform(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if hasattr(os, "getloadavg"):
        # Other work on a shared machine slows multi-threaded CPU ops: record how busy it was.
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}")
    return info


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("triton", "transformers", "zreward", "onnxruntime"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def record_header(bench: str, args: dict) -> dict:
    """The fields every result record starts with: bench, date, commit, machine, versions, args."""
    return {"bench": bench, "date": now_utc(), **git_commit(), "machine": machine_info(), "versions": versions(),
            "args": args}


def append_json(path: str | os.PathLike, record: dict) -> None:
    """Appends `record` to the JSON list in `path` (created if missing), atomically."""
    path = Path(path)
    runs = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
    if not isinstance(runs, list):
        raise ValueError(f"{path}: expected a JSON list of runs")
    runs.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(runs, indent=1) + "\n")


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"
