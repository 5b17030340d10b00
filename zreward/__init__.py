"""zreward: distributional text-to-image reward models (Z-Reward)."""

from zreward.distribution import ScoreDistribution
from zreward.errors import InputError
from zreward.rubric import Dimension, Rubric, default_rubric, five_level_rubric, make_rubric

__version__ = "0.1.0"

__all__ = [
    "Dimension",
    "InputError",
    "Rubric",
    "ScoreDistribution",
    "default_rubric",
    "five_level_rubric",
    "load",
    "load_engine",
    "make_rubric",
]


def load(model=None, **kwargs):
    """Loads a reward model: None = the embedded default, else a local directory or a hub id."""
    from zreward.models import load_model

    return load_model(model, **kwargs)


def load_engine(path, **kwargs):
    """Loads a compiled engine directory written by `zreward export` (validated; same `score` API)."""
    from zreward.engines import load_engine as _load

    return _load(path, **kwargs)
