"""The simulated generator's failures, the scenes and pixels they produce, and the true scores.

Each failure belongs to one rubric dimension and has a severity in [0.5, 1] (moderate to strong, so
that a small model can see it at 112 px; failures that are all-or-nothing, such as a wrong color,
have severity 1). Scene failures (alignment, composition, plausibility) change what is drawn;
pixel failures (fidelity) degrade the rendered image.

True score of a dimension (on the 1..5 scale):

    true_d = max(1, 5 - sum over failures f of dimension d of PENALTY[f.kind] * f.severity)

so a clean image scores 5 everywhere and each failure costs up to its PENALTY points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from zreward.data.shapeworld.grammar import COLORS, HELD_OUT, MAX_COUNT, SHAPES, Spec
from zreward.data.shapeworld.render import Scene, SceneObject, layout, object_radius

DIMENSIONS = ("alignment", "fidelity", "aesthetics", "plausibility")
KINDS: dict[str, tuple[str, ...]] = {
    "alignment": ("count_off", "wrong_color", "wrong_shape", "missing_group", "extra_object", "violated_relation"),
    "fidelity": ("blur", "noise", "jpeg", "smear", "color_cast"),
    "aesthetics": ("off_centre", "cramped", "low_contrast", "clashing_palette"),
    "plausibility": ("overlap", "fragmented", "cut_off"),
}
PENALTY: dict[str, float] = {
    "count_off": 1.6, "wrong_color": 2.0, "wrong_shape": 2.0, "missing_group": 2.5, "extra_object": 1.4,
    "violated_relation": 1.8,
    "blur": 2.2, "noise": 2.0, "jpeg": 2.0, "smear": 2.2, "color_cast": 1.8,
    "off_centre": 1.8, "cramped": 1.6, "low_contrast": 2.2, "clashing_palette": 2.0,
    "overlap": 2.2, "fragmented": 2.4, "cut_off": 2.0,
}  # fmt: skip
DISCRETE = frozenset(KINDS["alignment"])
TARGETED = ("missing_group", "count_off", "wrong_color", "wrong_shape")
# Share of images with no failure, and the distribution of the number of failures of the others.
P_CLEAN = 0.3
N_FAILURES_P = {1: 0.45, 2: 0.33, 3: 0.22}
CLASH_COLORS = ((255, 0, 200), (150, 255, 0), (0, 230, 230))


@dataclass
class Failure:
    """One injected failure; `info` records what exactly went wrong (filled in when applied)."""

    dimension: str
    kind: str
    severity: float
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "kind": self.kind, "severity": round(self.severity, 4), "info": self.info}


def true_scores(failures: list[Failure]) -> dict[str, float]:
    """{dimension: true score in [1, 5]} from the failures (the formula in the module docstring)."""
    out = {d: 5.0 for d in DIMENSIONS}
    for f in failures:
        out[f.dimension] -= PENALTY[f.kind] * f.severity
    return {d: round(max(1.0, v), 4) for d, v in out.items()}


# --- sampling ---------------------------------------------------------------------------------
def _applicable(kind: str, spec: Spec, chosen: list[Failure]) -> bool:
    kinds = {f.kind for f in chosen}
    if kind in kinds:
        return False
    n_groups = len(spec.groups)
    if kind in TARGETED:  # each of these changes a different group of the prompt
        if sum(k in TARGETED for k in kinds) >= n_groups:
            return False
        if kind == "missing_group":  # a group may vanish only if the relation stays visible
            return n_groups >= 2 and ("violated_relation" not in kinds or n_groups == 3)
        return True
    if kind == "violated_relation":
        return spec.relation is not None and ("missing_group" not in kinds or n_groups == 3)
    if kind in ("off_centre", "cramped") and {"off_centre", "cramped"} & kinds:
        return False  # one composition per image
    if kind in ("overlap", "cramped"):  # a cramped single object is just a centred one
        return spec.num_objects >= 2
    return True


def sample_failures(rng: np.random.Generator, spec: Spec) -> list[Failure]:
    """0..3 failures: none with probability P_CLEAN, each on a dimension chosen uniformly."""
    if rng.random() < P_CLEAN:
        return []
    n = int(rng.choice(list(N_FAILURES_P), p=list(N_FAILURES_P.values())))
    chosen: list[Failure] = []
    for _ in range(n):
        dim = DIMENSIONS[int(rng.integers(len(DIMENSIONS)))]
        options = [k for k in KINDS[dim] if _applicable(k, spec, chosen)]
        if not options:
            continue
        kind = options[int(rng.integers(len(options)))]
        severity = 1.0 if kind in DISCRETE else float(rng.uniform(0.5, 1.0))
        chosen.append(Failure(dim, kind, severity))
    return chosen


# --- scenes -----------------------------------------------------------------------------------
def _swap_relation(relation: str) -> str:
    return {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[relation]


def _free_combo(rng, taken: set, allowed, color=None, shape=None) -> tuple[str, str]:
    """A color-shape pair not in `taken` (with `color` or `shape` fixed), respecting HELD_OUT when
    not `allowed` to use it."""
    options = [
        (c, s) for c in COLORS for s in SHAPES
        if (c, s) not in taken and (allowed or (c, s) not in HELD_OUT)
        and (color is None or c == color) and (shape is None or s == shape)
    ]  # fmt: skip
    return options[int(rng.integers(len(options)))]


def build_scene(spec: Spec, failures: list[Failure], rng: np.random.Generator, image_size: int, ood: bool) -> Scene:
    """The scene a generator with these failures draws for `spec`.

    Fills each failure's info, and removes from `failures` (in place) one that cannot show: an
    overlap when a missing group leaves a single object.
    """
    groups = [[g.count, g.color, g.shape, g.size] for g in spec.groups]
    alive = list(range(len(groups)))
    free = list(range(len(groups)))
    rng.shuffle(free)
    by_kind = {f.kind: f for f in failures}
    taken = set(spec.combos)
    relation = spec.relation
    for kind in TARGETED:  # missing_group first: it may need group 2
        f = by_kind.get(kind)
        if f is None:
            continue
        if kind == "missing_group" and "violated_relation" in by_kind:
            free.remove(2)
            free.append(2)  # the third group is the only one that can vanish without hiding the relation
        gi = free.pop()
        g = groups[gi]
        f.info["group"] = gi
        if kind == "missing_group":
            alive.remove(gi)
            if gi in (0, 1):
                relation = None
        elif kind == "count_off":
            delta = 1 if g[0] == 1 or (g[0] < MAX_COUNT and rng.random() < 0.5) else -1
            f.info.update(asked=g[0], drawn=g[0] + delta)
            g[0] += delta
        elif kind == "wrong_color":
            new = _free_combo(rng, taken, ood, shape=g[2])
            f.info.update(asked=g[1], drawn=new[0])
            g[1] = new[0]
            taken.add(new)
        else:
            new = _free_combo(rng, taken, ood, color=g[1])
            f.info.update(asked=g[2], drawn=new[1])
            g[2] = new[1]
            taken.add(new)
    n_objects = sum(groups[i][0] for i in alive) + ("extra_object" in by_kind)
    objects = [
        SceneObject(groups[i][1], groups[i][2], object_radius(n_objects, groups[i][3], image_size), i, groups[i][3])
        for i in alive for _ in range(groups[i][0])
    ]  # fmt: skip
    if "extra_object" in by_kind:
        color, shape = _free_combo(rng, taken, ood)
        by_kind["extra_object"].info.update(color=color, shape=shape)
        objects.append(SceneObject(color, shape, object_radius(n_objects, None, image_size)))
    if "violated_relation" in by_kind:
        relation = _swap_relation(relation)
        by_kind["violated_relation"].info.update(asked=spec.relation, drawn=relation)

    box, gap = (0.0, 0.0, 1.0, 1.0), None
    if "off_centre" in by_kind:  # everything in a corner box, objects a little smaller
        f = by_kind["off_centre"]
        side = 0.68 - 0.16 * f.severity
        cx, cy = int(rng.integers(2)), int(rng.integers(2))
        x0, y0 = cx * (1 - side), cy * (1 - side)
        box, gap = (x0, y0, x0 + side, y0 + side), 0.025 * image_size
        f.info["corner"] = ("top", "bottom")[cy] + " " + ("left", "right")[cx]
        for o in objects:
            o.r *= min(1.0, 1.3 * side)
    elif "cramped" in by_kind:  # objects at full size squeezed into a small central box, nearly touching
        f = by_kind["cramped"]
        side = 0.62 - 0.14 * f.severity
        box, gap = ((1 - side) / 2, (1 - side) / 2, (1 + side) / 2, (1 + side) / 2), 0.01 * image_size
    layout(objects, relation, rng, image_size, box, gap)

    if "overlap" in by_kind and len(objects) < 2:
        failures.remove(by_kind.pop("overlap"))  # a missing group left a single object: nothing to overlap
    if "overlap" in by_kind:
        f = by_kind["overlap"]
        i, j = (int(k) for k in rng.choice(len(objects), size=2, replace=False))
        a, b = objects[i], objects[j]
        # pull both towards their midpoint (which stays inside the image) until they interpenetrate
        d = (a.r + b.r) * (0.8 - 0.45 * f.severity)
        mx, my, ang = (a.x + b.x) / 2, (a.y + b.y) / 2, math.atan2(b.y - a.y, b.x - a.x)
        a.x, a.y = mx - d / 2 * math.cos(ang), my - d / 2 * math.sin(ang)
        b.x, b.y = mx + d / 2 * math.cos(ang), my + d / 2 * math.sin(ang)
        f.info.update(objects=[_name(a), _name(b)])
    if "cut_off" in by_kind:
        f = by_kind["cut_off"]
        o = objects[int(rng.integers(len(objects)))]
        d = o.r * (0.2 - 0.6 * f.severity)  # centre this far inside the border (negative: outside)
        side = int(rng.integers(4))
        if side == 0:
            o.x = d
        elif side == 1:
            o.x = image_size - d
        elif side == 2:
            o.y = d
        else:
            o.y = image_size - d
        f.info.update(object=_name(o), border=("left", "right", "top", "bottom")[side])
    if "fragmented" in by_kind:
        f = by_kind["fragmented"]
        o = objects[int(rng.integers(len(objects)))]
        width = o.r * (0.16 + 0.14 * f.severity)
        n_cuts = 1 if f.severity < 0.75 else 2
        a0 = rng.uniform(0, math.pi)
        o.cuts = [(a0 + k * math.pi / 2, float(rng.uniform(-0.2, 0.2)) * o.r, width) for k in range(n_cuts)]
        f.info.update(object=_name(o), pieces=2 * n_cuts)

    scene = Scene(objects, spec.background, relation)
    if "low_contrast" in by_kind:
        scene.fade = 0.45 + 0.3 * by_kind["low_contrast"].severity
    if "clashing_palette" in by_kind:
        f = by_kind["clashing_palette"]
        color = CLASH_COLORS[int(rng.integers(len(CLASH_COLORS)))]
        scene.stripes = (color, float(rng.uniform(0, math.pi)), image_size * 0.16, 0.35 + 0.3 * f.severity)
    return scene


def _name(o: SceneObject) -> str:
    return f"{o.color} {o.shape}"
