"""Recipe sweep on one GPU: the project's own `zreward train sft`, several configurations at once.

A tiny student leaves most of a GPU idle (its step time is launch-bound), so the configurations train
side by side, each with its own data-loader workers, for the same wall-clock budget. The data is
ShapeWorld's documented set (n 12000, seed 0) plus extra seeds for the training split
(bench/datasets/shapeworld_more.py), so the base's val / test / ood figures stay comparable.

    python bench/gpu_train.py --out "$OUT/train" --minutes 6 --extra-seeds 31   # on the GPU machine
    python bench/gpu_train.py --out /tmp/sweep --dry-run                        # tiny, on the CPU

Writes to --out: results.json (per configuration: the command, exit code, wall time, the model's
training_log.json, its test / ood figures on the training device, the log's tail; rewritten as each
finishes) and <name>.tar (the model directory and its training log; the runs train under --work; over
15 MiB it comes as <name>.tar.part0, .part1, ...: `cat <name>.tar.part* > <name>.tar`), to evaluate
elsewhere with `zreward eval --model <name>/model --data .../base/test`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utils import ROOT, machine_info, now_utc, versions  # noqa: E402

PY = sys.executable
COMMON = ["--caption-loss-weight", "0.5", "--vision-warmup-batch-size", "128"]
CONFIGS = {
    # The embedded default (336 px), continued on many more images than a CPU budget reaches.
    "cont": COMMON + ["--init", "default", "--lr", "1e-4", "--groups-per-batch", "32"],
    "cont_b64": COMMON + ["--init", "default", "--lr", "2e-4", "--groups-per-batch", "64"],
    # The default made twice as wide without changing its scores (zreward.models.widen), then continued.
    "wide2x": COMMON + ["--init", "default", "--widen", "2", "--lr", "1e-4", "--groups-per-batch", "32"],
    # On the CPU lr 1e-4 first cost the widened default a point of val HPA (README, --widen): a gentler start.
    "wide2x_lr5e-5": COMMON + ["--init", "default", "--widen", "2", "--lr", "5e-5", "--groups-per-batch", "32"],
    # A wider student from scratch at the default's resolution (vision warm-up first).
    "wide": COMMON + ["--image-size", "336", "--hidden-size", "192", "--vision-hidden-size", "128",
                      "--vision-depth", "6", "--groups-per-batch", "32"],
    # The previous sweep's fresh 112-px recipes (bench/results/gpu_train_sweep.json).
    "b32": COMMON + ["--groups-per-batch", "32"],
}
# The score head runs on the plain-torch reference in training: the fused kernels are checked on the GPU
# in the same session (bench/gpu_check.py) and must not decide whether the sweep's models are valid.
TRAIN_ENV = {"ZREWARD_NO_EXT": "1", "ZREWARD_SCORE_HEAD_BACKEND": "reference", "OMP_NUM_THREADS": "1",
             "PYTHONUNBUFFERED": "1"}


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


# Files that come back from a lent GPU machine are capped at 16 MiB each (a widened default is ~18 MB).
PART_BYTES = 15 * 2**20


def _split(path: Path) -> list[str]:
    """Splits a file over PART_BYTES into NAME.part0, NAME.part1, ... (rejoin with `cat NAME.part* > NAME`)."""
    if path.stat().st_size <= PART_BYTES:
        return [path.name]
    parts = []
    with open(path, "rb") as f:
        while chunk := f.read(PART_BYTES):
            part = path.with_name(f"{path.name}.part{len(parts)}")
            part.write_bytes(chunk)
            parts.append(part.name)
    path.unlink()
    return parts


def _evaluate(model_dir: Path, data: Path) -> dict:
    """The model's headline figures on the base set's test and ood splits, on the training device."""
    import torch

    from zreward.data import load_dataset
    from zreward.eval import evaluate
    from zreward.models import load_model

    model = load_model(model_dir, device="cuda" if torch.cuda.is_available() else "cpu")
    out = {}
    for split in ("test", "ood"):
        t0 = time.monotonic()
        r = evaluate(model, load_dataset(data / "base" / split, model.rubric), batch_size=64, progress=False)
        out[split] = {k: r[k] for k in ("hpa", "margin_hpa", "plcc", "ece", "n_pairs")}
        out[split]["dimension_plcc"] = {d: v["plcc"] for d, v in r["dimensions"].items()}
        out[split]["seconds"] = round(time.monotonic() - t0, 1)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_train"), type=Path)
    p.add_argument("--data", default=None, type=Path, help="a shapeworld_more.py folder (made if missing)")
    p.add_argument("--minutes", type=float, default=5.0, help="each configuration's --max-minutes")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names from CONFIGS")
    p.add_argument("--workers", type=int, default=4, help="data-loader workers per configuration")
    p.add_argument("--extra-seeds", type=int, default=4, help="extra ShapeWorld seeds for the training split")
    p.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1, help="processes generating the data")
    p.add_argument("--no-eval", action="store_true", help="skip the test / ood evaluation of each model")
    p.add_argument("--work", default=Path("/tmp/zreward-gpu-train"), type=Path,
                   help="where the runs train (only results.json and the tars go to --out)")
    p.add_argument("--dry-run", action="store_true", help="tiny data and budget, on the CPU")
    args = p.parse_args(argv)
    if args.dry_run:
        args.configs = "cont,wide" if args.configs == ",".join(CONFIGS) else args.configs
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"error: unknown configurations {unknown}; known: {list(CONFIGS)}")
    data = args.data or (Path("/tmp/swmore-dry") if args.dry_run else ROOT / "data" / "swmore")
    results = {"date": now_utc(), "machine": machine_info(), "versions": versions(), "minutes": args.minutes,
               "data": str(data), "runs": {}}
    t0 = time.monotonic()

    if not (data / "more.json").is_file():
        seeds = [str(s) for s in range(1, 1 + (1 if args.dry_run else args.extra_seeds))]
        gen = [PY, str(ROOT / "bench" / "datasets" / "shapeworld_more.py"), "--out", str(data),
               "--workers", str(args.gen_workers), "--extra-seeds", *seeds]
        gen += ["--n", "200"] if args.dry_run else []
        print(f"[gpu_train] data: {' '.join(gen)}", flush=True)
        subprocess.run(gen, check=True, cwd=ROOT)
    results["data_stats"] = json.loads((data / "more.json").read_text())
    results["data_seconds"] = round(time.monotonic() - t0, 1)
    print(f"[gpu_train] data ready in {results['data_seconds']} s: {results['data_stats']}", flush=True)

    procs = {}
    for name in names:
        run = args.work / name
        run.mkdir(parents=True, exist_ok=True)
        cmd = [PY, "-m", "zreward.cli", "train", "sft", "--data", str(data), "--out", str(run / "model"),
               "--max-minutes", str(0.4 if args.dry_run else args.minutes), "--workers", str(args.workers),
               *CONFIGS[name]]
        if args.dry_run:  # tiny batches and images for the CPU
            tiny = {"--groups-per-batch": "2", "--vision-warmup-batch-size": "2", "--image-size": "56"}
            cmd = [tiny.get(prev, c) for prev, c in zip([""] + cmd, cmd)]
        log = open(run / "train.log", "w")
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **TRAIN_ENV}), time.monotonic(), cmd, log)
        results["runs"][name] = {"command": " ".join(["zreward", *cmd[3:]])}
        print(f"[gpu_train] started {name}: {' '.join(cmd[3:])}", flush=True)
    _save(args.out / "results.json", results)

    while procs:
        for name, (proc, start, _cmd, log) in list(procs.items()):
            if proc.poll() is None:
                continue
            log.close()
            run = args.work / name
            text = (run / "train.log").read_text(errors="replace")
            entry = results["runs"][name]
            entry.update(rc=proc.returncode, seconds=round(time.monotonic() - start, 1), tail=text[-1500:])
            if (run / "model" / "training_log.json").is_file():
                entry["training_log"] = json.loads((run / "model" / "training_log.json").read_text())
            tmp = args.out / f"{name}.tar.tmp"
            with tarfile.open(tmp, "w") as tar:
                tar.add(run / "train.log", arcname=f"{name}/train.log")
                if (run / "model").is_dir():
                    tar.add(run / "model", arcname=f"{name}/model")
            os.replace(tmp, args.out / f"{name}.tar")
            size = (args.out / f"{name}.tar").stat().st_size
            entry["tar_bytes"] = size
            entry["tar_parts"] = _split(args.out / f"{name}.tar")
            val = entry.get("training_log", {}).get("val", {})
            print(f"[gpu_train] {name}: rc={proc.returncode} in {entry['seconds']} s, tar {size / 2**20:.1f} MiB, "
                  f"val hpa {val.get('hpa')} margin {val.get('margin_hpa')} plcc {val.get('plcc')}", flush=True)
            _save(args.out / "results.json", results)
            if proc.returncode == 0 and not args.no_eval:
                entry["eval"] = _evaluate(run / "model", data)
                print(f"[gpu_train] {name}: {entry['eval']}", flush=True)
                _save(args.out / "results.json", results)
            del procs[name]
        time.sleep(2)
    results["seconds"] = round(time.monotonic() - t0, 1)
    _save(args.out / "results.json", results)
    return 0 if all(r.get("rc") == 0 for r in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
