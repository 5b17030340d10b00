"""More ShapeWorld training data: extra seeds generated in parallel, merged into one training split.

The base set (`zreward data shapeworld --n N --seed 0`) keeps its val / test / ood splits untouched;
the extra seeds add their train, val and test images to the training split, minus every prompt the
base's val, test or ood splits hold (ood prompts use the held-out colour-shape pairs, which no
in-distribution split of any seed contains). So the base's held-out figures stay comparable.

    python bench/datasets/shapeworld_more.py --out data/swmore --n 12000 --base-seed 0 --extra-seeds 1 2 3 4

Writes OUT/base (the base set, as `zreward data shapeworld` writes it), OUT/seed<S> (each extra set) and
OUT/train (points.jsonl whose image paths point into them) and OUT/val (a copy of the base's val
points, paths rewritten); `zreward train sft --data OUT` then trains on the union and validates on
the base's val split, and `zreward eval --data OUT/base/test` measures on the base's test split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HELD = ("val", "test", "ood")


def _generate(args: tuple[str, int, int]) -> str:
    from zreward.data.shapeworld import generate_shapeworld

    out, n, seed = args
    if not (Path(out) / "meta.json").is_file():
        generate_shapeworld(out, n=n, seed=seed, progress=False)
    return out


def _points(split_dir: Path) -> list[dict]:
    with open(split_dir / "points.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_points(points: list[dict], split_dir: Path) -> None:
    """points.jsonl in split_dir, each image path made relative to split_dir (written atomically)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    tmp = split_dir / "points.jsonl.tmp"
    with open(tmp, "w") as f:
        for p in points:
            q = {k: v for k, v in p.items() if k != "_split"}
            q["image"] = os.path.relpath(p["_split"] / p["image"], split_dir)
            f.write(json.dumps(q) + "\n")
    os.replace(tmp, split_dir / "points.jsonl")


def build(out: Path, n: int, base_seed: int, extra_seeds: list[int], workers: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out / "base"), n, base_seed)] + [(str(out / f"seed{s}"), n, s) for s in extra_seeds]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        list(pool.map(_generate, jobs))
    base = out / "base"
    held = {p["prompt"] for split in HELD for p in _points(base / split)}
    train = [{**p, "_split": base / "train"} for p in _points(base / "train")]
    dropped = 0
    for s in extra_seeds:
        for split in ("train", "val", "test"):
            d = out / f"seed{s}" / split
            for p in _points(d):
                if p["prompt"] in held:
                    dropped += 1
                    continue
                train.append({**p, "id": f"seed{s}/{p['id']}", "_split": d})  # ids restart in every set
    _write_points(train, out / "train")
    _write_points([{**p, "_split": base / "val"} for p in _points(base / "val")], out / "val")
    stats = {"train_images": len(train), "train_prompts": len({p["prompt"] for p in train}),
             "dropped_held_out_prompt_images": dropped, "base": str(base), "extra_seeds": extra_seeds, "n": n}
    (out / "more.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=12000, help="images per seed (the base's documented size)")
    p.add_argument("--base-seed", type=int, default=0)
    p.add_argument("--extra-seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    if args.base_seed in args.extra_seeds:
        sys.exit(f"error: --extra-seeds must not include the base seed {args.base_seed}")
    stats = build(args.out, args.n, args.base_seed, args.extra_seeds, args.workers)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
