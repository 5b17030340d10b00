"""Scenes (objects with positions) and their anti-aliased rendering with PIL.

Every object is drawn as a coverage mask at 4x resolution on a small tile around it, the tile is
downsampled with LANCZOS and the object's color is pasted through it. That is the same picture as
rendering the whole canvas at 4x and downsampling it, at a fraction of the cost (an image takes
well under a millisecond), which is what lets a data set of thousands of images build in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from zreward.data.shapeworld.grammar import BACKGROUNDS, COLORS, SIZE_SCALE

SUPERSAMPLE = 4
_CANDIDATES = 64
# Half side of a square as a fraction of the object radius, so that its area matches a circle's.
SQUARE_HALF = 0.86


@dataclass
class SceneObject:
    """One object: `color` names COLORS, (x, y) is its centre and `r` its radius, in output pixels."""

    color: str
    shape: str
    r: float
    group: int = -1  # index of the prompt group it renders; -1 for an object the prompt did not ask for
    size: str | None = None
    x: float = 0.0
    y: float = 0.0
    cuts: list[tuple[float, float, float]] = field(default_factory=list)  # (angle, offset, width) gaps

    @property
    def extent(self) -> float:
        """Radius of the circle that holds the shape (a square's corners reach past r)."""
        return self.r * SQUARE_HALF * math.sqrt(2) if self.shape == "square" else self.r


@dataclass
class Scene:
    """What an image shows: objects on a background, plus palette-level changes."""

    objects: list[SceneObject]
    background: str
    relation: str | None  # the relation between groups 0 and 1 as drawn
    fade: float = 0.0  # blend of object colors towards the background (low contrast)
    stripes: tuple[tuple[int, int, int], float, float, float] | None = None  # (color, angle, period, alpha)


def base_radius(n_objects: int, image_size: int) -> float:
    """Object radius in pixels: large for a single object, shrinking with the cube root of the count."""
    return image_size * 0.2 / max(n_objects, 1) ** (1.0 / 3.0)


def object_radius(n_objects: int, size: str | None, image_size: int) -> float:
    return max(base_radius(n_objects, image_size) * SIZE_SCALE[size], 0.075 * image_size)


# --- layout -----------------------------------------------------------------------------------
def _region(obj: SceneObject, relation: str | None, box: tuple[float, float, float, float], gap: float):
    """(x0, x1, y0, y1) range of centres for `obj`: the two related groups get opposite halves of box."""
    x0, y0, x1, y1 = box
    e = obj.extent
    lo_x, hi_x, lo_y, hi_y = x0 + e, x1 - e, y0 + e, y1 - e
    if relation is not None and obj.group in (0, 1):
        first = obj.group == 0
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        if relation in ("left of", "right of"):
            if first == (relation == "left of"):
                hi_x = mx - gap / 2 - e
            else:
                lo_x = mx + gap / 2 + e
        elif first == (relation == "above"):
            hi_y = my - gap / 2 - e
        else:
            lo_y = my + gap / 2 + e
    return lo_x, hi_x, lo_y, hi_y


def layout(
    objects: list[SceneObject],
    relation: str | None,
    rng: np.random.Generator,
    image_size: int,
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    gap: float | None = None,
) -> None:
    """Places objects at random without overlap inside `box` (fractions of the image), in place.

    The relation holds strictly: every object of group 0 lies in one half of the box, every object of
    group 1 in the other. When the objects do not fit, all radii shrink by 8% and placement restarts.
    """
    box_px = tuple(v * image_size for v in box)
    gap = 0.05 * image_size if gap is None else gap
    order = sorted(range(len(objects)), key=lambda i: (objects[i].group not in (0, 1), -objects[i].r))
    for _ in range(60):
        px, py, pe = np.empty(len(objects)), np.empty(len(objects)), np.empty(len(objects))
        n = 0
        for i in order:
            obj = objects[i]
            lo_x, hi_x, lo_y, hi_y = _region(obj, relation, box_px, gap)
            if lo_x > hi_x or lo_y > hi_y:
                break
            # 64 candidate centres at once; the first one clear of every placed object wins
            cx, cy = rng.uniform(lo_x, hi_x, _CANDIDATES), rng.uniform(lo_y, hi_y, _CANDIDATES)
            clear = np.hypot(cx[:, None] - px[:n], cy[:, None] - py[:n]) >= obj.extent + pe[:n] + gap
            ok = np.flatnonzero(clear.all(axis=1))
            if not len(ok):
                break
            obj.x, obj.y = float(cx[ok[0]]), float(cy[ok[0]])
            px[n], py[n], pe[n] = obj.x, obj.y, obj.extent
            n += 1
        if n == len(objects):
            return
        for obj in objects:
            obj.r *= 0.92
    raise RuntimeError("ShapeWorld layout did not converge")  # unreachable for <= 9 objects


# --- drawing ----------------------------------------------------------------------------------
def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape centred at (cx, cy); circles are drawn as ellipses instead."""
    if shape == "square":
        h = r * SQUARE_HALF
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":  # pointing up, centroid at the centre
        return [(cx, cy - r), (cx + 0.866 * r, cy + 0.5 * r), (cx - 0.866 * r, cy + 0.5 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.78 * r, cy), (cx, cy + r), (cx - 0.78 * r, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else 0.48 * r
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(f"unknown shape {shape!r}")


def object_mask(obj: SceneObject) -> tuple[Image.Image, int, int]:
    """Coverage mask (mode L) of one object on its tile and the tile's top-left corner in the image."""
    s = SUPERSAMPLE
    pad = obj.extent + 2
    left, top = math.floor(obj.x - pad), math.floor(obj.y - pad)
    side = math.ceil(2 * pad) + 2
    mask = Image.new("L", (side * s, side * s), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy, r = (obj.x - left) * s, (obj.y - top) * s, obj.r * s
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(shape_polygon(obj.shape, cx, cy, r), fill=255)
    for angle, offset, width in obj.cuts:  # a fragmented object: background-colored gaps through it
        dx, dy = math.cos(angle), math.sin(angle)
        ox, oy = cx - dy * offset * s, cy + dx * offset * s
        ext = 2 * r
        draw.line((ox - dx * ext, oy - dy * ext, ox + dx * ext, oy + dy * ext), fill=0, width=max(1, round(width * s)))
    return mask.resize((side, side), Image.LANCZOS), left, top


def _stripes(size: int, bg: np.ndarray, color, angle: float, period: float, alpha: float) -> np.ndarray:
    """Background (H, W, 3) float with soft-edged diagonal stripes of `color` blended in at `alpha`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    phase = ((xx * math.cos(angle) + yy * math.sin(angle)) / period) % 1.0
    # Coverage of a half-period stripe, with a one-pixel linear ramp at each edge (anti-aliased).
    edge = 1.0 / period
    cover = np.clip(np.minimum(phase, 0.5 - phase) / edge + 0.5, 0.0, 1.0)[..., None]
    return bg * (1 - alpha * cover) + np.asarray(color, np.float32) * (alpha * cover)


def render(scene: Scene, image_size: int) -> Image.Image:
    """The scene as an RGB image (image_size x image_size)."""
    bg = BACKGROUNDS[scene.background]
    if scene.stripes is None:
        img = Image.new("RGB", (image_size, image_size), bg)
    else:
        base = np.broadcast_to(np.asarray(bg, np.float32), (image_size, image_size, 3))
        arr = _stripes(image_size, base, *scene.stripes)
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    for obj in scene.objects:
        c = COLORS[obj.color]
        color = tuple(round(a + (b - a) * scene.fade) for a, b in zip(c, bg, strict=True))
        mask, left, top = object_mask(obj)
        img.paste(color, (left, top, left + mask.width, top + mask.height), mask)
    return img
