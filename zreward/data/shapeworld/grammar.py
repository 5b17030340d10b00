"""The ShapeWorld prompt grammar: structured specs and the prompt text they read as.

A prompt asks for 1 to 3 object groups (a count 1-4, an optional size word, a color, a shape), an
optional spatial relation between the first two groups, and a background color, e.g.
"two red circles and a large blue square, the circles left of the square, on a gray background".
Each prompt's text is a pure function of its `Spec`, so prompts are identified by their text.

Held-out color-shape combinations never appear in the train / val / test splits (neither in prompts
nor in the objects a failure draws) and every prompt of the `ood` split uses at least one of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from zreward.errors import InputError

# Object colors, chosen far apart in RGB (and from every background) so that anti-aliased rims,
# which mix an object color with its background, are never mistaken for another object color.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (250, 135, 20),
    "yellow": (245, 210, 30),
    "green": (40, 160, 60),
    "blue": (35, 85, 220),
    "purple": (140, 60, 185),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "gray": (150, 150, 150),
    "black": (20, 20, 20),
    "beige": (232, 222, 196),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
# Radius multiplier of a size word (None = no size word).
SIZE_SCALE = {None: 1.0, "small": 0.72, "large": 1.3}
MAX_OBJECTS = 8
MAX_COUNT = 4
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# One held-out color per shape, so that every shape and every color but one still occurs in train.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("red", "star"), ("blue", "triangle"), ("green", "diamond"), ("yellow", "square"), ("purple", "circle")}
)


@dataclass(frozen=True)
class Group:
    """`count` objects of one color and shape; `size` is None, "small" or "large"."""

    count: int
    color: str
    shape: str
    size: str | None = None

    @property
    def combo(self) -> tuple[str, str]:
        return (self.color, self.shape)


@dataclass(frozen=True)
class Spec:
    """What a prompt asks for. `relation` (if any) holds between groups[0] and groups[1]."""

    groups: tuple[Group, ...]
    relation: str | None
    background: str

    @property
    def num_objects(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def combos(self) -> set[tuple[str, str]]:
        return {g.combo for g in self.groups}

    def to_dict(self) -> dict:
        return {"groups": [asdict(g) for g in self.groups], "relation": self.relation, "background": self.background}

    @classmethod
    def from_dict(cls, d: dict) -> "Spec":
        try:
            spec = cls(tuple(Group(**g) for g in d["groups"]), d.get("relation"), d["background"])
        except (KeyError, TypeError) as e:
            raise InputError(f"malformed ShapeWorld spec {d!r}: {e}") from None
        validate_spec(spec)
        return spec


def validate_spec(spec: Spec) -> None:
    if not 1 <= len(spec.groups) <= 3:
        raise InputError(f"a ShapeWorld spec has 1 to 3 groups, got {len(spec.groups)}")
    for g in spec.groups:
        if g.color not in COLORS or g.shape not in SHAPES or g.size not in SIZE_SCALE or not 1 <= g.count <= MAX_COUNT:
            raise InputError(f"invalid ShapeWorld group {g}")
    if len(spec.combos) != len(spec.groups):
        raise InputError(f"ShapeWorld groups must differ in color or shape: {spec.groups}")
    if spec.relation is not None and (spec.relation not in RELATIONS or len(spec.groups) < 2):
        raise InputError(f"invalid ShapeWorld relation {spec.relation!r}")
    if spec.background not in BACKGROUNDS:
        raise InputError(f"unknown ShapeWorld background {spec.background!r}")
    if spec.num_objects > MAX_OBJECTS:
        raise InputError(f"a ShapeWorld spec has at most {MAX_OBJECTS} objects, got {spec.num_objects}")


def allowed_combos(ood: bool) -> list[tuple[str, str]]:
    """Color-shape pairs objects of a split may take: all of them for `ood`, else the non-held-out."""
    combos = [(c, s) for c in COLORS for s in SHAPES]
    return combos if ood else [x for x in combos if x not in HELD_OUT]


def sample_spec(rng: np.random.Generator, ood: bool = False) -> Spec:
    """A random spec; train-side specs avoid HELD_OUT, `ood` specs contain at least one held-out pair."""
    n_groups = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    while True:
        counts = [int(rng.integers(1, MAX_COUNT + 1)) for _ in range(n_groups)]
        if sum(counts) <= MAX_OBJECTS:
            break
    pool = allowed_combos(ood)
    while True:
        idx = rng.choice(len(pool), size=n_groups, replace=False)
        combos = [pool[i] for i in idx]
        if not ood or any(c in HELD_OUT for c in combos):
            break
    groups = []
    for n, (color, shape) in zip(counts, combos, strict=True):
        size = str(rng.choice(SIZES)) if rng.random() < 0.35 else None
        groups.append(Group(n, color, shape, size))
    relation = str(rng.choice(RELATIONS)) if n_groups >= 2 and rng.random() < 0.7 else None
    background = str(rng.choice(list(BACKGROUNDS)))
    return Spec(tuple(groups), relation, background)


# --- text -------------------------------------------------------------------------------------
def plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def group_phrase(g: Group) -> str:
    """'two red circles', 'a large blue square'."""
    words = " ".join(w for w in (g.size, g.color, plural(g.shape, g.count)) if w)
    return f"{article(words)} {words}" if g.count == 1 else f"{NUMBER_WORDS[g.count]} {words}"


def group_reference(g: Group, other: Group) -> str:
    """'the circles' when the shape tells the groups apart, else 'the red circles'."""
    noun = plural(g.shape, g.count)
    return f"the {noun}" if g.shape != other.shape else f"the {g.color} {noun}"


def join_phrases(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def relation_clause(a: Group, b: Group, relation: str) -> str:
    return f"{group_reference(a, b)} {relation} {group_reference(b, a)}"


def prompt_text(spec: Spec) -> str:
    parts = [join_phrases([group_phrase(g) for g in spec.groups])]
    if spec.relation is not None:
        parts.append(relation_clause(spec.groups[0], spec.groups[1], spec.relation))
    parts.append(f"on {article(spec.background)} {spec.background} background")
    return ", ".join(parts)
