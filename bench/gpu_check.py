"""The GPU check: one command that, on a CUDA machine, builds the CUDA extension, runs the GPU tests and
the GPU benchmarks, and writes JSON results, within its own time limit (partial results are kept).

    python bench/gpu_check.py --out "$OUT"            # on the GPU machine (about 8 minutes at most)
    python bench/gpu_check.py --dry-run --out /tmp/x  # the same steps, tiny and on the CPU (CI)

Writes to --out (default $OUT, else bench/results/gpu_check/):
    gpu_check.json      summary: machine, versions, each step's status and time, backends, test counts,
                        the benchmark's headline numbers; rewritten after every step
    gpu_check.log       every step's output
    gpu_tests.xml       the test run (JUnit XML)
    score_head_gpu.json the benchmark records (bench/bench_score_head.py), to copy under bench/results/
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utils import ROOT, machine_info, now_utc, versions  # noqa: E402

PY = sys.executable
STATUS = "import json; from zreward.ops import backend_status; print(json.dumps(backend_status()))"


class Check:
    def __init__(self, out: Path, time_limit: float, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.start = time.monotonic()
        self.deadline = self.start + time_limit
        self.log = out / "gpu_check.log"
        self.log.write_text("")
        self.summary = {"date": now_utc(), "dry_run": dry_run, "time_limit_s": time_limit, "machine": machine_info(),
                        "versions": versions(), "steps": []}
        self.save()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.start, 1)
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=1) + "\n")
        os.replace(tmp, self.out / "gpu_check.json")

    def step(self, name: str, cmd: list[str], budget: float, env: dict | None = None) -> tuple[int, str]:
        """Runs cmd with at most `budget` seconds (and what is left overall); logs and records it."""
        timeout = max(1.0, min(budget, self.left() - 5))
        t0 = time.monotonic()
        print(f"[gpu_check] {name}: {' '.join(cmd)} (timeout {timeout:.0f} s)", flush=True)
        try:
            res = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                 capture_output=True, text=True, timeout=timeout)
            rc, text = res.returncode, res.stdout + res.stderr
        except subprocess.TimeoutExpired as exc:
            out = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            rc, text = 124, out(exc.stdout) + out(exc.stderr) + f"\n[gpu_check] {name} timed out after {timeout:.0f} s"
        seconds = round(time.monotonic() - t0, 1)
        with self.log.open("a") as f:
            f.write(f"\n===== {name} (rc={rc}, {seconds} s): {' '.join(cmd)}\n{text}")
        self.summary["steps"].append({"name": name, "rc": rc, "seconds": seconds, "tail": text[-1500:]})
        self.save()
        print(f"[gpu_check] {name}: rc={rc} in {seconds} s", flush=True)
        return rc, text


def _test_counts(text: str) -> dict:
    line = next((ln for ln in reversed(text.strip().splitlines()) if re.search(r"\d+ (passed|failed|error)", ln)), "")
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", line)}


def _bench_headline(path: Path) -> list[dict]:
    """Per (N, H, V, mode): auto's backend, its ms, the transformers ms, the speedup and memory ratio."""
    if not path.exists():
        return []
    rows = json.loads(path.read_text())[-1]["results"]
    out = []
    for r in rows:
        if r["is_auto"]:
            out.append({k: r.get(k) for k in ("n", "h", "v", "mode", "provider", "median_ms", "gbps",
                                              "speedup_vs_transformers", "memory_ratio_vs_transformers")})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench" / "results" / "gpu_check"))
    p.add_argument("--dry-run", action="store_true", help="tiny versions of every step, on the CPU")
    p.add_argument("--time-limit", type=float, default=480.0, help="seconds for the whole check")
    p.add_argument("--tests", default="tests/ops tests/models/test_cuda_model.py",
                   help="pytest paths for the GPU tests (space-separated)")
    p.add_argument("--skip-bench", action="store_true", help="stop after the tests (the benchmark runs apart)")
    p.add_argument("--skip-build", action="store_true", help="use the zreward._C already built")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.time_limit, args.dry_run)
    cuda_env = {"TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
                "MAX_JOBS": os.environ.get("MAX_JOBS", str(os.cpu_count() or 4))}

    # 1. Build. The dry run goes through setup.py with the extension switched off (seconds, no compile).
    if args.dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            check.step("build", [PY, "setup.py", "build_ext", "--build-lib", tmp, "--build-temp", tmp], 60,
                       {"ZREWARD_NO_EXT": "1"})
    elif not args.skip_build:
        rc, _ = check.step("build", [PY, "setup.py", "build_ext", "--inplace"], 240, cuda_env)
        check.step("nvidia-smi", ["nvidia-smi"], 20)

    # 2. Which backends are live now.
    rc, text = check.step("backend_status", [PY, "-c", STATUS], 60)
    if rc == 0:
        check.summary["backends"] = json.loads(text.strip().splitlines()[-1])
        check.save()

    # 3. Tests.
    junit = out / "gpu_tests.xml"
    if args.dry_run:
        tests = [PY, "-m", "pytest", "tests/ops/test_score_head.py", "-q", "-rs", "-p", "no:cacheprovider",
                 "-k", "test_reference or backend_status", f"--junitxml={junit}"]
    else:
        tests = [PY, "-m", "pytest", *args.tests.split(), "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    rc, text = check.step("tests", tests, 60 if args.dry_run else 240)
    check.summary["tests"] = {"rc": rc, **_test_counts(text)}
    check.save()

    # 4. Benchmarks, stopping themselves before the overall limit.
    if args.skip_bench:
        check.summary["ok"] = all(s["rc"] == 0 for s in check.summary["steps"] if s["name"] != "nvidia-smi")
        check.save()
        print(f"[gpu_check] done in {check.summary['elapsed_s']} s (no benchmark): ok={check.summary['ok']}")
        return 0 if check.summary["ok"] else 1
    bench_json = out / "score_head_gpu.json"
    if args.dry_run:
        bench = [PY, "bench/bench_score_head.py", "--tiny", "--device", "cpu", "--reps", "2", "--modes", "fwd",
                 "--providers", "transformers,reference,ext", "--out", str(bench_json)]
    else:
        bench = [PY, "bench/bench_score_head.py", "--device", "cuda", "--out", str(bench_json),
                 "--time-limit", str(max(10, int(check.left() - 40)))]
    rc, _ = check.step("bench", bench, max(10.0, check.left() - 10))
    check.summary["bench"] = {"rc": rc, "file": bench_json.name, "auto": _bench_headline(bench_json)}
    check.summary["ok"] = all(s["rc"] == 0 for s in check.summary["steps"] if s["name"] != "nvidia-smi")
    check.save()
    print(f"[gpu_check] done in {check.summary['elapsed_s']} s: ok={check.summary['ok']}; results in {out}")
    return 0 if check.summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
