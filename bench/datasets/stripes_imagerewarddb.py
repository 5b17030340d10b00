"""A second synthetic preference dataset, built unlike ShapeWorld, in ImageRewardDB's published layout.

StripeWorld: prompts "<n> <color> <vertical|horizontal> stripes on a <bg> background"; a generator
that gets the count, colour or orientation wrong (alignment) or blurs, adds noise or pixelates
(fidelity); ONE rater per image on ImageRewardDB's 1..7 scale (image_text_alignment_rating,
fidelity_rating, overall rank per prompt_id) — so it exercises the importer, a different rating
scale, two of the four rubric dimensions and single-annotator labels.

    python bench/datasets/stripes_imagerewarddb.py --out data/stripes --prompts 700
    zreward data import imagerewarddb data/stripes/raw/train --out data/stripes/train
    zreward data import imagerewarddb data/stripes/raw/test --out data/stripes/test
    zreward train sft --data data/stripes/train --out runs/stripes --max-minutes 15
    zreward eval --model runs/stripes --data data/stripes/test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
          "purple": (140, 60, 190), "orange": (245, 140, 30)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128)}
SIZE = 112


def draw(n: int, color: str, vertical: bool, bg: str) -> Image.Image:
    img = Image.new("RGB", (SIZE * 2, SIZE * 2), BACKGROUNDS[bg])
    d = ImageDraw.Draw(img)
    period = SIZE * 2 / (n + 1)
    width = period * 0.45
    for i in range(n):
        c = period * (i + 1)
        box = (c - width / 2, 8, c + width / 2, SIZE * 2 - 8) if vertical else (8, c - width / 2, SIZE * 2 - 8, c + width / 2)
        d.rectangle(box, fill=COLORS[color])
    return img.resize((SIZE, SIZE), Image.LANCZOS)


def sample(rng: np.random.Generator, prompt_id: str, n: int, color: str, vertical: bool, bg: str, k: int):
    """One generated image with failures, and its single rater's 1..7 ratings."""
    align_pen, fid_pen = 0.0, 0.0
    dn, c, v = n, color, vertical
    if rng.random() < 0.55:
        kind = rng.choice(["count", "color", "orientation"])
        if kind == "count":
            dn = int(np.clip(n + rng.choice([-2, -1, 1, 2]), 1, 6))
            align_pen += 1.5 * abs(dn - n)
        elif kind == "color":
            c = str(rng.choice([x for x in COLORS if x != color]))
            align_pen += 3.0
        else:
            v = not vertical
            align_pen += 3.5
    img = draw(dn, c, v, bg)
    if rng.random() < 0.5:
        kind = rng.choice(["blur", "noise", "pixelate"])
        s = rng.uniform(0.5, 1.0)
        if kind == "blur":
            img = img.filter(ImageFilter.GaussianBlur(1.0 + 2.5 * s))
        elif kind == "noise":
            a = np.asarray(img).astype(np.float32) + rng.normal(0, 25 + 45 * s, (SIZE, SIZE, 3))
            img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        else:
            f = int(6 + 8 * s)
            img = img.resize((SIZE // f, SIZE // f), Image.BILINEAR).resize((SIZE, SIZE), Image.NEAREST)
        fid_pen += 2.0 + 3.0 * s
    rate = lambda pen: int(np.clip(round(7 - pen + rng.normal(0, 0.6)), 1, 7))
    return img, rate(align_pen), rate(fid_pen)


def build(out: Path, prompts: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = list(range(prompts))
    test = set(ids[: max(1, prompts // 8)])
    for split in ("train", "test"):
        (out / "raw" / split / "images").mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "test": []}
    for p in ids:
        n, color = int(rng.integers(1, 6)), str(rng.choice(list(COLORS)))
        vertical, bg = bool(rng.random() < 0.5), str(rng.choice([b for b in BACKGROUNDS]))
        if COLORS[color] == BACKGROUNDS[bg]:
            bg = "gray"
        prompt = f"{n} {color} {'vertical' if vertical else 'horizontal'} stripe{'s' if n > 1 else ''} on a {bg} background"
        split = "test" if p in test else "train"
        group = []
        for k in range(4):
            img, a, f = sample(rng, str(p), n, color, vertical, bg, k)
            rel = f"images/{p:05d}_{k}.png"
            img.save(out / "raw" / split / rel)
            overall = (a + f) / 2 + rng.normal(0, 0.3)
            group.append({"prompt_id": f"{p:05d}", "prompt": prompt, "image_path": rel,
                          "image_text_alignment_rating": a, "fidelity_rating": f, "overall_rating": round(overall, 2)})
        order = np.argsort([-g["overall_rating"] for g in group], kind="stable")
        for rank, i in enumerate(order, 1):
            group[i]["rank"] = rank
        rows[split] += group
    for split, r in rows.items():
        (out / "raw" / split / f"{split}.json").write_text(json.dumps(r))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--prompts", type=int, default=700)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    build(args.out, args.prompts, args.seed)
    print(f"wrote {args.out}/raw/train and {args.out}/raw/test")
