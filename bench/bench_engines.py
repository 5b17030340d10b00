"""Compiled engines against the eager PyTorch model: parity and throughput, side by side.

Providers: "eager" (ZRewardModel.score), and one engine per backend that runs on this machine
(onnxruntime CPU, aoti CPU; tensorrt needs a GPU with TensorRT 11). Every provider scores through
its public `score(images, prompts, batch_size)`, so host preprocessing (tokenizing, resizing,
patchifying) is included the same way for all.

Parity (fp32): max |probs difference| of each engine against the eager model on 64 ShapeWorld
images + 16 random-pixel images (limit zreward.testing.ENGINE_PROBS_ATOL), and batch invariance
(the same images scored in batches of 32 and one at a time; limit BATCH_INVARIANCE_ATOL).

Throughput: images/s at batch 1, 8 and 32 (median of repeats, p10 / p90 kept), every provider timed
in the same run, speedup against eager.

    python bench/bench_engines.py                    # the embedded default model (else a tiny qwen2_vl, 112 px)
    python bench/bench_engines.py --model DIR --backends onnxruntime
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utils import ROOT, append_json, record_header, time_call  # noqa: E402

from zreward.engines import export_engine, load_engine  # noqa: E402
from zreward.engines.verify import batch_invariance, max_abs, sample_images  # noqa: E402
from zreward.testing import BATCH_INVARIANCE_ATOL, ENGINE_PROBS_ATOL  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "engines.json"


def load_subject(model_arg: str | None):
    """(model, description): the given checkpoint, the embedded default, or a tiny qwen2_vl at 112 px."""
    from zreward.models import DEFAULT_MODEL_DIR, build_tiny_model, load_model

    if model_arg:
        return load_model(model_arg), model_arg
    if (DEFAULT_MODEL_DIR / "zreward.json").is_file():
        return load_model(None), "default"
    return build_tiny_model("qwen2_vl", image_size=112), "tiny qwen2_vl (random init, 112 px; no embedded model)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--backends", nargs="+", default=["onnxruntime", "aoti"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=20.0, help="Per-point time cap (at least 3 reps).")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for every provider (torch, AOTInductor's OpenMP, onnxruntime); default: "
                         "each library's own. On a shared machine 1 avoids threads waiting on busy cores.")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, subject = load_subject(args.model)
    images, prompts = sample_images(64, 16, model.image_size, seed=0)
    print(f"subject: {subject} ({model.family.model_type}, {model.image_size} px, torch threads "
          f"{torch.get_num_threads()})")
    eager_probs = model.score(images, prompts, batch_size=32).probs
    providers = {"eager": model}
    record = record_header("engines", vars(args))
    record.update(subject=subject, model_type=model.family.model_type, image_size=model.image_size,
                  parity={}, export_seconds={}, throughput=[])

    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            t0 = time.perf_counter()
            export_engine(model, Path(tmp) / backend, backend=backend, max_batch=max(args.batches),
                          log=lambda msg, b=backend: print(f"[{b}] {msg}"))
            record["export_seconds"][backend] = round(time.perf_counter() - t0, 1)
            engine = load_engine(Path(tmp) / backend, threads=args.threads)
            probs = engine.score(images, prompts, batch_size=32).probs
            score = lambda i, p, e=engine: e.score(i, p, batch_size=len(i)).probs
            record["parity"][backend] = {
                "images": len(images), "shapeworld_images": 64, "random_images": 16,
                "max_abs_probs": max_abs(probs, eager_probs), "probs_atol": ENGINE_PROBS_ATOL,
                "batch_invariance": batch_invariance(score, images, prompts, 32),
                "batch_invariance_atol": BATCH_INVARIANCE_ATOL,
            }
            print(f"[{backend}] parity {record['parity'][backend]}")
            providers[backend] = engine

        for b in args.batches:
            imgs, ps = images[:b], prompts[:b]
            row = {"batch": b}
            for name, p in providers.items():
                call = lambda p=p, i=imgs, q=ps, n=b: p.score(i, q, batch_size=n)
                t = time_call(call, "cpu", reps=args.reps, warmup=2, max_seconds=args.max_seconds)
                row[name] = {**t, "images_per_s": round(b / (t["median_ms"] / 1e3), 1)}
            for name in providers:
                row[name]["speedup_vs_eager"] = round(row["eager"]["median_ms"] / row[name]["median_ms"], 2)
            record["throughput"].append(row)
            print(f"batch {b:>3}: " + "  ".join(f"{n} {row[n]['images_per_s']:>8.1f} img/s "
                                                f"(x{row[n]['speedup_vs_eager']})" for n in providers))
    append_json(args.out, record)
    ok = all(v["max_abs_probs"] <= ENGINE_PROBS_ATOL and v["batch_invariance"] <= BATCH_INVARIANCE_ATOL
             for v in record["parity"].values())
    print(f"parity {'within' if ok else 'OUTSIDE'} limits; appended to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
