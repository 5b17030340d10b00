"""A classical computer-vision judge of ShapeWorld alignment, working from the pixels alone.

1. Segmentation: the background is the palette background nearest to the median border pixel;
   every pixel goes to the nearest palette color if it lies within COLOR_TOL of it (anti-aliased rims,
   mixtures of an object color and the background, match no color and drop out).
2. Objects: connected components (8-connectivity, scipy.ndimage) of each color, at least MIN_AREA
   and with a body that survives a 3x3 erosion.
3. Shapes from descriptors of each component: fill ratio (area / bounding-box area), vertical offset
   of the centroid from the box centre (over the box height) and aspect ratio (width / height):
   square: fill >= 0.87; circle: fill >= 0.68; triangle (points up, centroid low): offset >= 0.1;
   diamond: aspect < 0.89 (taller than wide); star: otherwise.
4. Groups: components counted per (color, shape), compared with the spec; the relation holds when the
   centroid of group 0's objects lies on the asked side of group 1's.

Size words are not judged. The score is 5 minus 1.5 per mismatched, missing or unexpected group and
per violated relation, floored at 1.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from zreward.data.shapeworld.grammar import BACKGROUNDS, COLORS, Spec

COLOR_TOL = 70.0
MIN_AREA = 0.0025  # of the image area: 31 px at 112 px, below the smallest object drawn
_PALETTE = np.asarray(list(COLORS.values()), np.float32)
_COLOR_NAMES = list(COLORS)
_BG = np.asarray(list(BACKGROUNDS.values()), np.float32)
_BOX = np.ones((3, 3), bool)


@dataclass
class Detection:
    color: str
    shape: str
    x: float
    y: float
    area: int


@dataclass
class OracleResult:
    matches: bool  # the image shows exactly the spec's groups (and relation)
    score: float  # alignment score in [1, 5]
    found: dict[tuple[str, str], int]  # (color, shape) -> count
    relation_ok: bool | None  # None when the spec has no relation (or a related group is absent)
    problems: list[str] = field(default_factory=list)


def _as_array(image: Any) -> np.ndarray:
    """(H, W, 3) float32 in 0..255 from anything `zreward.images.load_image` takes."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        return image.astype(np.float32)
    from zreward.images import load_image

    return load_image(image).permute(1, 2, 0).numpy() * 255.0


def classify_shape(fill: float, offset: float, aspect: float) -> str:
    if fill >= 0.87:
        return "square"
    if fill >= 0.68:
        return "circle"
    if offset >= 0.1:
        return "triangle"
    return "diamond" if aspect < 0.89 else "star"


def detect(image: Any) -> list[Detection]:
    """Objects found in an image (path, PIL image, uint8 (H, W, 3) array or (3, H, W) tensor)."""
    from scipy import ndimage

    img = _as_array(image)
    h, w = img.shape[:2]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = _BG[np.argmin(((_BG - np.median(border, axis=0)) ** 2).sum(-1))]
    colors = np.vstack([_PALETTE, bg[None]])
    flat = img.reshape(-1, 3)
    # squared distances |x - c|^2 = |x|^2 - 2 x.c + |c|^2, (H * W, C + 1)
    dist = (flat * flat).sum(1, keepdims=True) - 2 * flat @ colors.T + (colors * colors).sum(1)
    best = dist.argmin(1)
    label = np.where(dist[np.arange(len(best)), best] < COLOR_TOL**2, best, -1).reshape(h, w)
    min_area = MIN_AREA * h * w
    out = []
    for ci, name in enumerate(_COLOR_NAMES):
        mask = label == ci
        if not mask.any():
            continue
        comps, n = ndimage.label(mask, structure=_BOX)
        # pixels that survive a 3x3 erosion: an object has a body, a thin anti-aliased rim of a
        # neighbouring color (yellow on black reads as orange there) has none
        core = ndimage.sum(ndimage.binary_erosion(mask, structure=_BOX), comps, np.arange(1, n + 1))
        for k, sl in enumerate(ndimage.find_objects(comps), 1):
            ys, xs = np.nonzero(comps[sl] == k)
            if len(ys) < min_area or core[k - 1] < 0.15 * len(ys):
                continue
            bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            offset = (ys.mean() - (bh - 1) / 2) / bh
            shape = classify_shape(len(ys) / (bh * bw), offset, bw / bh)
            out.append(Detection(name, shape, float(xs.mean() + sl[1].start), float(ys.mean() + sl[0].start), len(ys)))
    return out


def _relation_holds(a: list[Detection], b: list[Detection], relation: str) -> bool:
    ax, ay = np.mean([d.x for d in a]), np.mean([d.y for d in a])
    bx, by = np.mean([d.x for d in b]), np.mean([d.y for d in b])
    return {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[relation]


def judge(image: Any, spec: Spec) -> OracleResult:
    """Does the image show what `spec` asks for? Counts, colors, shapes and the relation."""
    found_objs: dict[tuple[str, str], list[Detection]] = defaultdict(list)
    for d in detect(image):
        found_objs[(d.color, d.shape)].append(d)
    found = {k: len(v) for k, v in found_objs.items()}
    problems = []
    for g in spec.groups:
        n = found.get(g.combo, 0)
        if n != g.count:
            problems.append(f"{g.color} {g.shape}: asked {g.count}, found {n}")
    for combo, n in found.items():
        if combo not in spec.combos:
            problems.append(f"{combo[0]} {combo[1]}: not asked, found {n}")
    relation_ok = None
    if spec.relation is not None:
        a, b = found_objs.get(spec.groups[0].combo), found_objs.get(spec.groups[1].combo)
        if a and b:
            relation_ok = bool(_relation_holds(a, b, spec.relation))
            if not relation_ok:
                problems.append(f"relation {spec.relation!r} does not hold")
    score = max(1.0, 5.0 - 1.5 * len(problems))
    return OracleResult(not problems, score, found, relation_ok, problems)


def alignment_agreement(samples: Iterable[tuple[Any, Spec, list[dict]]]) -> dict:
    """How often the oracle's verdict agrees with the metadata, on clean and alignment-only images.

    samples: (image, spec, failures as dicts with a "dimension") triples; images with a failure on
    another dimension are skipped. An image agrees when the oracle says it matches iff it has no
    failure. Returns {"agreement", "n", "n_clean", "n_failed"} (agreement NaN when n is 0).
    """
    hits = n = n_clean = 0
    for image, spec, failures in samples:
        if any(f["dimension"] != "alignment" for f in failures):
            continue
        clean = not failures
        hits += judge(image, spec).matches == clean
        n += 1
        n_clean += clean
    return {"agreement": hits / n if n else float("nan"), "n": n, "n_clean": n_clean, "n_failed": n - n_clean}
