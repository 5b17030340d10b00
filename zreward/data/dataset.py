"""The preference data format: a directory of JSONL files, loaded into a `PreferenceDataset`.

A dataset is a directory DIR holding

  points.jsonl  {"id"?: str, "prompt": str, "image": path, "scores": {dimension: [annotator scores]},
                 "rationale"?: str, ...}   (other keys, e.g. "meta", are kept in Point.extra)
  pairs.jsonl   {"prompt": str, "image_a": path, "image_b": path, "preference": "a" | "b" | "tie"}
  rubric.json   (optional) the scale the scores are on, `zreward.rubric.load_rubric`'s forms, e.g.
                {"dimensions": ["quality", "safety"], "values": [1, 2, 3, 4, 5]}; absent: the default
                rubric (alignment, fidelity, aesthetics, plausibility on 1.0, 1.5, ..., 5.0)

Image paths are relative to DIR (subfolders and ".." allowed) or absolute. Scores sit on the
rubric's grid; an image may carry any non-empty subset of the rubric's dimensions. Either file may
be missing, not both: without pairs.jsonl the pairs are every same-prompt pair of points
(`derive_pairs`); without points.jsonl the dataset is pairs only, which is enough for HPA.

In memory, `dataset.images` lists each unique (absolute image path, prompt) once; points and pairs
refer to it by index (`image_of_point`, `pair_index()`), so every image is scored once.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from zreward.errors import InputError
from zreward.io import atomic_write_text, read_jsonl
from zreward.rubric import Rubric, default_rubric, load_rubric

POINTS_FILE = "points.jsonl"
PAIRS_FILE = "pairs.jsonl"
RUBRIC_FILE = "rubric.json"
PREFERENCES = ("a", "b", "tie")
TIE_TOL = 1e-9  # human overall means closer than this are a tie


@dataclass
class Point:
    """One image of one prompt with its annotator scores {dimension: [score, ...]}."""

    id: str | None
    prompt: str
    image: Path
    scores: dict[str, list[float]]
    rationale: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Pair:
    prompt: str
    image_a: Path
    image_b: Path
    preference: str  # "a", "b" or "tie"


@dataclass(frozen=True)
class ImageRef:
    """A unique scoring unit: an image under a prompt."""

    path: Path
    prompt: str


# --- human scores --------------------------------------------------------------------------------
def _point_means(points: Sequence[Point], rubric: Rubric) -> torch.Tensor:
    """(N, D) float64 mean annotator score per dimension, NaN where a point lacks the dimension."""
    rows = [[math.nan] * rubric.num_dimensions for _ in points]
    for row, p in zip(rows, points):
        for dim, vals in p.scores.items():
            row[rubric.index(dim)] = sum(vals) / len(vals) if vals else math.nan
    return torch.tensor(rows, dtype=torch.float64).reshape(len(points), rubric.num_dimensions)


def _weighted(means: torch.Tensor, weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the last axis restricted to `present`, weights renormalized; NaN if none."""
    w = weights * present
    den = w.sum(-1)
    num = (torch.nan_to_num(means) * w).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, math.nan))


def _overall_gap(means_a: torch.Tensor, means_b: torch.Tensor, rubric: Rubric) -> torch.Tensor:
    """(P,) overall(A) - overall(B) over the dimensions both images have (weights renormalized).

    Comparing on common dimensions only keeps a dimension one image lacks from deciding the pair.
    """
    w = torch.tensor(rubric.weights, dtype=torch.float64)
    common = ~torch.isnan(means_a) & ~torch.isnan(means_b)
    return _weighted(means_a - means_b, w, common)


def _preference(gap: float) -> str:
    return "tie" if abs(gap) <= TIE_TOL else ("a" if gap > 0 else "b")


def derive_pairs(points: Sequence[Point], rubric: Rubric) -> list[Pair]:
    """Every same-prompt pair of points (in file order), preferred by human overall mean.

    The overall mean of each side is taken over the dimensions both images have; pairs without a
    common dimension are left out (nothing to compare).
    """
    means = _point_means(points, rubric)
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        by_prompt.setdefault(p.prompt, []).append(i)
    images = [Path(p.image) for p in points]
    names = [str(im) for im in images]  # compared as strings: Path equality re-parses both sides
    ia, ib = [], []
    for idx in by_prompt.values():
        for x, i in enumerate(idx):
            for j in idx[x + 1 :]:
                if names[i] != names[j]:
                    ia.append(i)
                    ib.append(j)
    gaps = _overall_gap(means[ia], means[ib], rubric).tolist()  # one batched call, not one per pair
    return [Pair(points[i].prompt, images[i], images[j], _preference(g))
            for i, j, g in zip(ia, ib, gaps) if not math.isnan(g)]


# --- the dataset ---------------------------------------------------------------------------------
class PreferenceDataset:
    """Points (N), pairs (P) and the unique images (M) they refer to, under one rubric (D dims, K bins)."""

    def __init__(self, root, rubric: Rubric, points: Iterable[Point], pairs: Iterable[Pair], derived_pairs=False):
        self.root = Path(root).absolute()
        self.rubric = rubric
        self.points = list(points)
        self.pairs = list(pairs)
        self.derived_pairs = derived_pairs  # pairs came from points, so saving omits pairs.jsonl
        index: dict[tuple[Path, str], int] = {}
        self.images: list[ImageRef] = []

        def ref(path, prompt) -> int:
            key = (path if isinstance(path, Path) else Path(path), prompt)
            if key not in index:
                index[key] = len(self.images)
                self.images.append(ImageRef(*key))
            return index[key]

        self.image_of_point = torch.tensor([ref(p.image, p.prompt) for p in self.points], dtype=torch.long)
        ab = [(ref(q.image_a, q.prompt), ref(q.image_b, q.prompt)) for q in self.pairs]
        self._pair_ab = torch.tensor(ab, dtype=torch.long).reshape(len(ab), 2)
        self.point_of_image = torch.full((len(self.images),), -1, dtype=torch.long)
        self.point_of_image[self.image_of_point] = torch.arange(len(self.points))

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return (f"PreferenceDataset({str(self.root)!r}, points={len(self.points)}, pairs={len(self.pairs)}, "
                f"images={len(self.images)})")

    @property
    def prompts(self) -> list[str]:
        """Unique prompts in order of first appearance (points, then pairs)."""
        return list(dict.fromkeys([p.prompt for p in self.points] + [q.prompt for q in self.pairs]))

    def histograms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """probs (N, D, K) float32 annotator histograms (zeros where missing), mask (N, D) bool."""
        r = self.rubric
        probs = torch.zeros(len(self.points), r.num_dimensions, r.num_bins, dtype=torch.float32)
        mask = torch.zeros(len(self.points), r.num_dimensions, dtype=torch.bool)
        rows, cols, hists = [], [], []
        for n, p in enumerate(self.points):
            for dim, vals in p.scores.items():
                rows.append(n)
                cols.append(r.index(dim))
                hists.append(r.histogram(vals, where=f"point {p.id or n} {dim}"))
        if hists:  # one tensor write, not one per (point, dimension)
            probs[rows, cols] = torch.tensor(hists, dtype=torch.float32)
            mask[rows, cols] = True
        return probs, mask

    def human_means(self) -> torch.Tensor:
        """(N, D) float64 mean annotator score per dimension, NaN where missing."""
        return _point_means(self.points, self.rubric)

    def human_overall(self) -> torch.Tensor:
        """(N,) float64 overall mean: rubric weights renormalized over each point's dimensions."""
        means = self.human_means()
        return _weighted(means, torch.tensor(self.rubric.weights, dtype=torch.float64), ~torch.isnan(means))

    def pair_index(self) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
        """idx_a (P,), idx_b (P,) into `images`; preferences; human_gap (P,) float64.

        human_gap = overall(A) - overall(B) over the dimensions both have (the quantity
        `derive_pairs` orders by); NaN when an image of the pair has no point.
        """
        img_means = torch.full((len(self.images), self.rubric.num_dimensions), math.nan, dtype=torch.float64)
        img_means[self.image_of_point] = self.human_means()
        ia, ib = self._pair_ab[:, 0].clone(), self._pair_ab[:, 1].clone()
        gap = _overall_gap(img_means[ia], img_means[ib], self.rubric)
        return ia, ib, [q.preference for q in self.pairs], gap

    def subset(self, prompts: Iterable[str]) -> "PreferenceDataset":
        """The points and pairs of the given prompts."""
        keep = set(prompts)
        return PreferenceDataset(self.root, self.rubric, [p for p in self.points if p.prompt in keep],
                                 [q for q in self.pairs if q.prompt in keep], self.derived_pairs)

    def save(self, root) -> Path:
        """Writes the dataset to `root` (image paths relative to it when inside it, else absolute)."""
        return write_dataset(root, self.points, None if self.derived_pairs else self.pairs, rubric=self.rubric)


def split_by_prompt(dataset: PreferenceDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0):
    """Splits by prompt (no prompt in two splits) into len(fractions) datasets, e.g. train/val/test.

    Counts round by largest remainder; every split with a positive fraction gets at least one
    prompt when there are enough prompts.
    """
    fr = [float(f) for f in fractions]
    if not fr or any(not math.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise InputError(f"split fractions must be non-negative and sum to 1, got {list(fractions)}")
    prompts = dataset.prompts
    random.Random(seed).shuffle(prompts)
    n = len(prompts)
    counts = [math.floor(f * n) for f in fr]
    order = sorted(range(len(fr)), key=lambda i: fr[i] * n - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in range(len(fr)):  # a positive fraction should not end up empty; take from the largest
        if fr[i] > 0 and counts[i] == 0 and n >= sum(f > 0 for f in fr):
            counts[max(range(len(fr)), key=lambda j: counts[j])] -= 1
            counts[i] = 1
    out, start = [], 0
    for c in counts:
        out.append(dataset.subset(prompts[start : start + c]))
        start += c
    return tuple(out)


# --- reading -------------------------------------------------------------------------------------
def _text(obj: dict, key: str, where: str) -> str:
    if key not in obj:
        raise InputError(f"{where}: missing key {key!r}")
    v = obj[key]
    if not isinstance(v, str):
        raise InputError(f"{where}: {key!r} must be a string, got {type(v).__name__}")
    if not v.strip():
        raise InputError(f"{where}: {key!r} is empty")
    return v


def _image(root: Path, obj: dict, key: str, where: str, check: bool) -> Path:
    raw = _text(obj, key, where)
    path = os.path.normpath(os.path.join(root, raw))  # an absolute `raw` replaces root
    if check and not os.path.isfile(path):
        raise InputError(f"{where}: {key} {raw!r} not found (looked for {path})")
    return Path(path)


def _scores(raw, rubric: Rubric, where: str) -> dict[str, list[float]]:
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{where}: 'scores' must be a non-empty object {{dimension: [scores]}}, got {raw!r}")
    out = {}
    for dim, vals in raw.items():
        if not rubric.has_dimension(dim):
            raise InputError(f"{where}: unknown dimension {dim!r}; the rubric's dimensions are {rubric.names}")
        if vals is None:  # null: not rated on this dimension (how pandas writes a missing value)
            continue
        if not isinstance(vals, list):
            raise InputError(f"{where} {dim}: scores must be a list of annotator scores, got {vals!r}")
        if not vals:
            raise InputError(f"{where} {dim}: empty score list")
        for v in vals:
            rubric.bin_of(v, where=f"{where} {dim}")
        out[dim] = [float(v) for v in vals]
    if not out:
        raise InputError(f"{where}: 'scores' has no dimension with scores (all null)")
    return out


_POINT_KEYS = ("id", "prompt", "image", "scores", "rationale")


def _read_points(root: Path, rubric: Rubric, check: bool) -> list[Point]:
    path = root / POINTS_FILE
    points, ids, seen = [], {}, {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        pid = obj.get("id")
        if pid is not None:
            if not isinstance(pid, str) or not pid:
                raise InputError(f"{where}: 'id' must be a non-empty string, got {pid!r}")
            if pid in ids:
                raise InputError(f"{where}: duplicate id {pid!r} (first at line {ids[pid]})")
            ids[pid] = lineno
        prompt = _text(obj, "prompt", where)
        image = _image(root, obj, "image", where, check)
        if "scores" not in obj:
            raise InputError(f"{where}: missing key 'scores'")
        scores = _scores(obj["scores"], rubric, where)
        rationale = obj.get("rationale")
        if rationale is not None and not isinstance(rationale, str):
            raise InputError(f"{where}: 'rationale' must be a string, got {type(rationale).__name__}")
        if (image, prompt) in seen:  # one point per (image, prompt): pairs index images by it
            raise InputError(f"{where}: image {obj['image']!r} already has a point for this prompt "
                             f"(line {seen[image, prompt]})")
        seen[image, prompt] = lineno
        extra = {k: v for k, v in obj.items() if k not in _POINT_KEYS}
        points.append(Point(pid, prompt, image, scores, rationale, extra))
    return points


def _read_pairs(root: Path, check: bool) -> list[Pair]:
    path = root / PAIRS_FILE
    pairs = []
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        prompt = _text(obj, "prompt", where)
        a = _image(root, obj, "image_a", where, check)
        b = _image(root, obj, "image_b", where, check)
        if a == b:
            raise InputError(f"{where}: image_a and image_b are the same image ({obj['image_a']!r})")
        if "preference" not in obj:
            raise InputError(f"{where}: missing key 'preference'")
        pref = obj["preference"]
        if pref not in PREFERENCES:
            raise InputError(f"{where}: preference must be one of {list(PREFERENCES)}, got {pref!r}")
        pairs.append(Pair(prompt, a, b, pref))
    return pairs


def read_rubric(root) -> Rubric | None:
    """The rubric a dataset directory declares in rubric.json, or None when it declares none."""
    path = Path(root) / RUBRIC_FILE
    return load_rubric(path) if path.is_file() else None


def load_dataset(root, rubric: Rubric | None = None, check_images: bool = True) -> PreferenceDataset:
    """Reads and validates a dataset directory; every error names the file and line.

    rubric: the scale to read the scores on (a model's, to evaluate it). None: the one the directory
    declares in rubric.json, else the default. Given both, they must agree (dimensions, bins, weights).
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise InputError(f"{root}: dataset directory not found")
    declared = read_rubric(root)
    if rubric is None:
        rubric = declared or default_rubric()
    elif declared is not None:
        rubric.check_same_scale(declared, f"the model's rubric and {root / RUBRIC_FILE}")
    has_points, has_pairs = (root / POINTS_FILE).is_file(), (root / PAIRS_FILE).is_file()
    if not has_points and not has_pairs:
        splits = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / POINTS_FILE).is_file()) if root.is_dir() else []
        hint = f"; it holds the splits {', '.join(splits)}: name one, e.g. {root / ('test' if 'test' in splits else splits[0])}" if splits else ""
        raise InputError(f"{root}: no {POINTS_FILE} (a dataset needs {POINTS_FILE}, or {PAIRS_FILE} for "
                         f"a pairs-only dataset){hint}")
    points = _read_points(root, rubric, check_images) if has_points else []
    pairs = _read_pairs(root, check_images) if has_pairs else derive_pairs(points, rubric)
    if not points and not pairs:
        raise InputError(f"{root}: the dataset has no points and no pairs")
    return PreferenceDataset(root, rubric, points, pairs, derived_pairs=not has_pairs)


# --- writing -------------------------------------------------------------------------------------
def _relpath(path, root: Path) -> str:
    """Relative (POSIX) to root when inside it, so the directory can move; absolute otherwise."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    path = Path(os.path.normpath(path))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _point_row(p, root: Path) -> dict:
    if isinstance(p, dict):
        return p
    row = dict(p.extra)
    if p.id is not None:
        row["id"] = p.id
    row.update(prompt=p.prompt, image=_relpath(p.image, root), scores={k: list(v) for k, v in p.scores.items()})
    if p.rationale is not None:
        row["rationale"] = p.rationale
    return row


def _pair_row(q, root: Path) -> dict:
    if isinstance(q, dict):
        return q
    return {"prompt": q.prompt, "image_a": _relpath(q.image_a, root), "image_b": _relpath(q.image_b, root),
            "preference": q.preference}


def _write_image(path: Path, img) -> None:
    """bytes | PIL image | uint8 array (H, W, 3) | a file to copy -> `path`, atomically."""
    import shutil

    import numpy as np

    from zreward.io import atomic_file

    with atomic_file(path) as tmp:
        if isinstance(img, (bytes, bytearray)):
            tmp.write_bytes(img)
        elif isinstance(img, (str, os.PathLike)):
            shutil.copyfile(img, tmp)
        else:
            from PIL import Image

            if isinstance(img, np.ndarray):
                img = Image.fromarray(img)
            fmt = Image.registered_extensions().get(path.suffix.lower())
            if fmt is None:
                raise InputError(f"{path}: unknown image format {path.suffix!r}")
            img.save(tmp, format=fmt)


def write_dataset(root, points: Iterable = (), pairs: Iterable | None = None, images: dict | None = None,
                  rubric: Rubric | None = None) -> Path:
    """Writes a dataset directory: `images` {relative path: image} first, then the JSONL files.

    points / pairs: Point / Pair objects (paths written relative to root when inside it) or rows
    already in the file format. pairs=None writes no pairs.jsonl (pairs are then derived from
    points); no points writes a pairs-only dataset. rubric: written to rubric.json unless it is the
    default (None: the default). Each file is written atomically.
    """
    from zreward.io import write_jsonl

    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    for rel, img in (images or {}).items():
        _write_image(Path(os.path.normpath(root / rel)), img)
    rows = [_point_row(p, root) for p in points]
    pair_rows = None if pairs is None else [_pair_row(q, root) for q in pairs]
    if not rows and not pair_rows:
        raise InputError(f"{root}: nothing to write (no points and no pairs)")
    if rubric is not None and rubric != default_rubric():
        atomic_write_text(root / RUBRIC_FILE, rubric.to_json() + "\n")
    else:
        (root / RUBRIC_FILE).unlink(missing_ok=True)
    # A stale file from an earlier write would change what the directory means: remove it.
    for name, data in ((PAIRS_FILE, pair_rows), (POINTS_FILE, rows or None)):
        if data is None:
            (root / name).unlink(missing_ok=True)
        else:
            write_jsonl(root / name, data)
    return root
