"""Rubrics: the scoring scale a reward model is trained on, as data.

A rubric names the dimensions an image is judged on (each with a weight in the overall score and a
sentence the prompt template shows the model), the K bin values of the scale, and the K vocabulary
tokens that stand for those values at a score slot. The default is the paper's: 4 dimensions on the
9-level half-point scale 1.0, 1.5, ..., 5.0 with equal weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from zreward.errors import InputError

_GRID_TOL = 1e-6


def _finite(x: int | float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # a JSON integer too large for a float
        return False


@dataclass(frozen=True)
class Dimension:
    name: str
    description: str
    weight: float = 1.0


@dataclass(frozen=True)
class Rubric:
    """dimensions (D), bin values (K, equally spaced, ascending) and their score tokens (K)."""

    dimensions: tuple[Dimension, ...]
    values: tuple[float, ...]
    score_tokens: tuple[str, ...]
    # The token that fills each score slot of the student template (one pass scores every dimension).
    slot_token: str = "<|score|>"
    name: str = "custom"
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not self.dimensions:
            raise InputError("a rubric needs at least one dimension")
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise InputError(f"rubric dimension names repeat: {names}")
        if len(self.values) < 2:
            raise InputError("a rubric needs at least two bin values")
        if len(self.score_tokens) != len(self.values):
            raise InputError(
                f"rubric has {len(self.values)} bin values but {len(self.score_tokens)} score tokens"
            )
        if len(set(self.score_tokens)) != len(self.score_tokens) or self.slot_token in self.score_tokens:
            raise InputError("rubric score tokens must be distinct and differ from the slot token")
        if not all(isinstance(v, (int, float)) and _finite(v) for v in self.values):
            raise InputError(f"rubric bin values must be finite numbers: {list(self.values)}")
        steps = [b - a for a, b in zip(self.values, self.values[1:])]
        if min(steps) <= 0 or max(steps) - min(steps) > _GRID_TOL:
            raise InputError(f"rubric bin values must be ascending and equally spaced: {self.values}")
        weights = [d.weight for d in self.dimensions]
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and _finite(w) for w in weights):
            raise InputError(f"rubric weights must be finite numbers: {weights}")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InputError("rubric weights must be non-negative with a positive sum")
        # Scores read from data are almost always the grid values themselves: a dict lookup, not arithmetic.
        object.__setattr__(self, "_dim_index", {d.name: i for i, d in enumerate(self.dimensions)})
        object.__setattr__(self, "_exact_bins", {float(v): k for k, v in enumerate(self.values)})

    # --- shape --------------------------------------------------------------------------------
    @property
    def num_dimensions(self) -> int:
        return len(self.dimensions)

    @property
    def num_bins(self) -> int:
        return len(self.values)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @property
    def weights(self) -> list[float]:
        """Dimension weights normalized to sum to one."""
        total = sum(d.weight for d in self.dimensions)
        return [d.weight / total for d in self.dimensions]

    @property
    def low(self) -> float:
        return self.values[0]

    @property
    def high(self) -> float:
        return self.values[-1]

    @property
    def step(self) -> float:
        return self.values[1] - self.values[0]

    def has_dimension(self, name: str) -> bool:
        return isinstance(name, str) and name in self._dim_index

    def index(self, name: str) -> int:
        try:
            return self._dim_index[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown dimension {name!r}; this rubric has {self.names}") from None

    # --- scores on the grid -------------------------------------------------------------------
    def bin_of(self, score: float, where: str = "score") -> int:
        """Index of the bin a score sits on; an error naming `where` if it is off the grid."""
        if type(score) is float and (k := self._exact_bins.get(score)) is not None:
            return k
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not _finite(score):
            shown = f"{score!r}" if len(repr(score)) <= 40 else f"{repr(score)[:37]}..."
            raise InputError(f"{where}: score {shown} is not a finite number")
        k = (score - self.low) / self.step
        kr = round(k)
        if abs(k - kr) > 1e-4 or not 0 <= kr < self.num_bins:
            raise InputError(
                f"{where}: score {score} is not on this rubric's grid {list(self.values)}"
            )
        return int(kr)

    def histogram(self, scores: Iterable[float], where: str = "scores") -> list[float]:
        """Normalized histogram over the K bins of a list of annotator scores."""
        counts = [0.0] * self.num_bins
        n = 0
        for s in scores:
            counts[self.bin_of(s, where)] += 1
            n += 1
        if n == 0:
            raise InputError(f"{where}: no annotator scores")
        return [c / n for c in counts]

    def snap(self, score: float) -> float:
        """The bin value nearest to a real-valued score (clamped to the scale)."""
        k = min(max(round((score - self.low) / self.step), 0), self.num_bins - 1)
        return self.values[k]

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["dimensions"] = [asdict(x) for x in self.dimensions]
        d["values"] = list(self.values)
        d["score_tokens"] = list(self.score_tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Rubric":
        """The to_dict form; also the short form people write by hand: dimensions as names or as
        {"name", "description"?, "weight"?}, and no score_tokens (then `score_tokens_for(values)`)."""
        try:
            if not isinstance(d.get("dimensions"), list):
                raise TypeError(f"'dimensions' must be a list, got {type(d.get('dimensions')).__name__}")
            if not isinstance(d.get("values"), list):
                raise TypeError(f"'values' must be a list, got {type(d.get('values')).__name__}")
            dims = tuple(Dimension(x, x) if isinstance(x, str) else Dimension(**{"description": x["name"], **x})
                         for x in d["dimensions"])
            values = tuple(float(v) for v in d["values"])
            return cls(
                dimensions=dims,
                values=values,
                score_tokens=tuple(d["score_tokens"]) if "score_tokens" in d else score_tokens_for(values),
                slot_token=d.get("slot_token", "<|score|>"),
                name=d.get("name", "custom"),
                meta=d.get("meta", {}),
            )
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise InputError(f"malformed rubric ({type(e).__name__}: {e}); expected {{\"dimensions\": [names or "
                             f"{{\"name\", \"description\", \"weight\"}}], \"values\": [bin values]}}") from None

    def check_same_scale(self, other: "Rubric", what: str) -> None:
        """An error unless `other` has the same dimensions, bin values and weights: what scores and labels
        must share for means, pairs and the overall score to mean the same thing (descriptions and token
        spellings may differ). `what` names the two sides in the message."""
        for attr in ("names", "values", "weights"):
            a, b = list(getattr(self, attr)), list(getattr(other, attr))
            same = a == b if attr == "names" else len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b))
            if not same:
                raise InputError(f"{what}: the rubrics differ in {attr}: {a} vs {b}")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Rubric":
        return cls.from_dict(json.loads(text))


def load_rubric(path) -> Rubric:
    """A rubric from a JSON file (`Rubric.from_dict`'s forms); errors name the file."""
    from zreward.io import read_json

    raw = read_json(path, "rubric")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a rubric is a JSON object, got {type(raw).__name__}")
    try:
        return Rubric.from_dict(raw)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def score_tokens_for(values: Sequence[float]) -> tuple[str, ...]:
    return tuple(f"<|score_{v:g}|>" for v in values)


def make_rubric(
    dimensions: Sequence[tuple[str, str] | tuple[str, str, float] | Dimension],
    values: Sequence[float],
    name: str = "custom",
    score_tokens: Sequence[str] | None = None,
) -> Rubric:
    dims = tuple(d if isinstance(d, Dimension) else Dimension(*d) for d in dimensions)
    values = tuple(float(v) for v in values)
    return Rubric(dims, values, tuple(score_tokens) if score_tokens else score_tokens_for(values), name=name)


DEFAULT_DIMENSIONS = (
    Dimension("alignment", "does the image show what the prompt asks for (objects, counts, colors, relations)"),
    Dimension("fidelity", "is the image clean and sharp (no blur, noise, compression blocks, smears or color casts)"),
    Dimension("aesthetics", "is the composition balanced and the palette pleasant"),
    Dimension("plausibility", "are the objects whole and physically plausible (no overlaps, fragments or cut-offs)"),
)

HALF_POINT_VALUES = tuple(1.0 + 0.5 * k for k in range(9))


def default_rubric() -> Rubric:
    """The paper's rubric: 4 dimensions x 9 half-point bins (1.0 ... 5.0), equal weights."""
    return make_rubric(DEFAULT_DIMENSIONS, HALF_POINT_VALUES, name="zreward-default")


def five_level_rubric(dimensions: Sequence = DEFAULT_DIMENSIONS) -> Rubric:
    """A 5-level integer scale (1 ... 5), as Q-Align-style models use."""
    return make_rubric(dimensions, (1.0, 2.0, 3.0, 4.0, 5.0), name="five-level")
