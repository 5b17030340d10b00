"""Writes a ShapeWorld data set: train / val / test / ood split directories plus meta.json.

Each split directory is in the project's preference data format:
    points.jsonl  {"id", "prompt", "image": "images/<id>.png", "scores": {dim: [annotator scores]},
                   "rationale", "meta": {"true_scores", "true_overall", "failures", "spec"}}
    pairs.jsonl   {"prompt", "image_a", "image_b", "preference": "a" | "b" | "tie"} for every pair of
                  images of one prompt
    images/*.png

Everything derives from `seed` through numpy SeedSequences (one for the prompts, one for the
annotator panel, one per prompt for its images), so the same seed gives byte-identical files.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np

from zreward.data.shapeworld.annotators import (
    BIAS_SD,
    DIM_SUBJECTIVITY,
    NOISE_SD,
    SUBJECTIVITY_SD,
    AnnotatorPanel,
    noise_ceiling,
    overall,
    prompt_pairs,
    to_rubric_scale,
)
from zreward.data.shapeworld.corrupt import (
    DIMENSIONS,
    KINDS,
    N_FAILURES_P,
    P_CLEAN,
    PENALTY,
    build_scene,
    sample_failures,
    true_scores,
)
from zreward.data.shapeworld.fidelity import degrade
from zreward.data.shapeworld.grammar import HELD_OUT, Spec, prompt_text, sample_spec
from zreward.data.shapeworld.oracle import alignment_agreement
from zreward.data.shapeworld.rationale import rationale
from zreward.data.shapeworld.render import render
from zreward.errors import InputError
from zreward.io import atomic_dir
from zreward.rubric import Rubric, default_rubric

SPLITS = ("train", "val", "test", "ood")
ORACLE_SAMPLE = 120  # clean images, and as many alignment-only failed ones, the oracle judges


def split_sizes(n_prompts: int) -> dict[str, int]:
    """Prompts per split: ood ~10%, the rest 80/10/10 (each split gets one once there are 4 prompts)."""
    n_ood = max(round(0.1 * n_prompts), n_prompts >= 4)
    rest = n_prompts - n_ood
    n_val = max(round(0.1 * rest), rest >= 3)
    return {"train": rest - 2 * n_val, "val": n_val, "test": n_val, "ood": n_ood}


def _unique_specs(rng: np.random.Generator, n: int, ood: bool, seen: set[str]) -> list[Spec]:
    specs = []
    for _ in range(1000 * n + 1000):
        if len(specs) == n:
            break
        spec = sample_spec(rng, ood=ood)
        text = prompt_text(spec)
        if text not in seen:
            seen.add(text)
            specs.append(spec)
    else:
        raise InputError(f"could not draw {n} distinct ShapeWorld prompts")
    return specs


def _check_args(n, image_size, images_per_prompt, n_annotators, rubric: Rubric) -> None:
    for name, v, lo in (("n", n, 1), ("image_size", image_size, 32), ("images_per_prompt", images_per_prompt, 1),
                        ("n_annotators", n_annotators, 1)):  # fmt: skip
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    if sorted(rubric.names) != sorted(DIMENSIONS):
        raise InputError(f"ShapeWorld scores the dimensions {list(DIMENSIONS)}; the rubric has {rubric.names}")


def generate_shapeworld(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    image_size: int = 112,
    images_per_prompt: int = 4,
    rubric: Rubric | None = None,
    n_annotators: int = 5,
    progress: bool = True,
) -> dict:
    """Generates `n` images in all (the last train prompt may have fewer than images_per_prompt).

    Writes out_dir/{train,val,test,ood}/ and out_dir/meta.json atomically (nothing appears at
    out_dir unless everything was written) and returns the meta.json contents.
    """
    from tqdm.auto import tqdm

    rubric = rubric or default_rubric()
    _check_args(n, image_size, images_per_prompt, n_annotators, rubric)
    prompt_seq, panel_seq, image_seq = np.random.SeedSequence(seed).spawn(3)
    n_prompts = math.ceil(n / images_per_prompt)
    sizes = split_sizes(n_prompts)
    prng, seen = np.random.default_rng(prompt_seq), set()
    ood_specs = _unique_specs(prng, sizes["ood"], True, seen)
    ind = _unique_specs(prng, n_prompts - sizes["ood"], False, seen)
    a, b = sizes["train"], sizes["train"] + sizes["val"]
    plan = {"train": ind[:a], "val": ind[a:b], "test": ind[b:], "ood": ood_specs}
    counts = [images_per_prompt] * n_prompts
    counts[0] = n - images_per_prompt * (n_prompts - 1)
    panel = AnnotatorPanel(rubric, n_annotators, np.random.default_rng(panel_seq))
    prompt_rngs = [np.random.default_rng(s) for s in image_seq.spawn(n_prompts)]

    stats, oracle_samples = {}, ([], [])  # (clean, alignment-only failed) images
    bar = tqdm(total=n, desc="shapeworld", unit="img", disable=not progress)
    with atomic_dir(out_dir) as tmp:
        p = 0
        for split in SPLITS:
            d = Path(tmp) / split
            (d / "images").mkdir(parents=True)
            points, pairs = [], []
            for spec in plan[split]:
                rng, prompt = prompt_rngs[p], prompt_text(spec)
                paths, overalls = [], []
                for j in range(counts[p]):
                    pid = f"sw{p:05d}-{j}"
                    failures = sample_failures(rng, spec)
                    scene = build_scene(spec, failures, rng, image_size, ood=split == "ood")
                    img = degrade(render(scene, image_size), failures, rng)
                    img.save(d / "images" / f"{pid}.png", format="PNG", compress_level=1)
                    true = true_scores(failures)
                    scores = panel.rate(true, rng)
                    shown = {k: rubric.snap(to_rubric_scale(true[k], rubric)) for k in rubric.names}
                    true_overall = overall({k: to_rubric_scale(v, rubric) for k, v in true.items()}, rubric)
                    fdicts = [f.to_dict() for f in failures]
                    points.append({
                        "id": pid, "prompt": prompt, "image": f"images/{pid}.png", "scores": scores,
                        "rationale": rationale(spec, scene, failures, shown, true_overall, rng),
                        "meta": {"true_scores": true, "true_overall": round(true_overall, 4), "failures": fdicts,
                                 "spec": spec.to_dict()},
                    })  # fmt: skip
                    if all(f.dimension == "alignment" for f in failures) and len(oracle_samples[bool(failures)]) < ORACLE_SAMPLE:
                        oracle_samples[bool(failures)].append((np.asarray(img), spec, fdicts))
                    paths.append(f"images/{pid}.png")
                    overalls.append(panel.mean_overall(scores))
                    bar.update(1)
                pairs.extend(prompt_pairs(prompt, paths, overalls))
                p += 1
            _write_jsonl(d / "points.jsonl", points)
            _write_jsonl(d / "pairs.jsonl", pairs)
            stats[split] = _split_stats(plan[split], points, pairs, rubric)
        bar.close()
        meta = {
            "name": "shapeworld",
            "config": {"n": n, "seed": seed, "image_size": image_size, "images_per_prompt": images_per_prompt,
                       "n_annotators": n_annotators},
            "rubric": rubric.to_dict(),
            "splits": stats,
            "held_out_combos": sorted([list(c) for c in HELD_OUT]),
            "oracle_alignment_agreement": _oracle_agreement(oracle_samples[0] + oracle_samples[1]),
            "generator": {"failure_kinds": KINDS, "p_clean": P_CLEAN, "n_failures_p": {str(k): v for k, v in N_FAILURES_P.items()},
                          "penalty": PENALTY},
            "annotators": {"bias_sd": BIAS_SD, "subjectivity_sd": SUBJECTIVITY_SD, "noise_sd": NOISE_SD,
                           "dim_subjectivity": DIM_SUBJECTIVITY},
        }  # fmt: skip
        (Path(tmp) / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _oracle_agreement(samples: list) -> dict | None:
    """The oracle's agreement on a sample of the data (None without scipy, which the oracle needs)."""
    if importlib.util.find_spec("scipy") is None:
        return None
    return alignment_agreement(samples)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _split_stats(specs: list[Spec], points: list[dict], pairs: list[dict], rubric: Rubric) -> dict:
    non_tie = sum(q["preference"] != "tie" for q in pairs)
    ceiling = noise_ceiling(points, pairs, rubric)
    return {
        "prompts": len(specs),
        "images": len(points),
        "pairs": len(pairs),
        "non_tie_pairs": non_tie,
        "clean_fraction": round(sum(not p["meta"]["failures"] for p in points) / max(len(points), 1), 4),
        "noise_ceiling_hpa": None if math.isnan(ceiling) else round(ceiling, 4),
    }
