import pytest

from zreward import Dimension, InputError, Rubric, default_rubric, five_level_rubric, make_rubric


def test_default_rubric_is_the_papers():
    r = default_rubric()
    assert r.names == ["alignment", "fidelity", "aesthetics", "plausibility"]
    assert r.values == (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
    assert r.weights == [0.25] * 4
    assert len(set(r.score_tokens)) == 9


def test_round_trip_json():
    r = make_rubric([("a", "x", 2.0), ("b", "y", 1.0)], (0, 1, 2), name="mine")
    assert Rubric.from_json(r.to_json()) == r
    assert r.weights == pytest.approx([2 / 3, 1 / 3])


def test_grid_checks():
    r = default_rubric()
    assert r.bin_of(3.5) == 5
    assert r.histogram([1.0, 1.0, 5.0, 3.0]) == pytest.approx([0.5, 0, 0, 0, 0.25, 0, 0, 0, 0.25])
    with pytest.raises(InputError, match="p.jsonl:3 alignment: score 3.2 is not on"):
        r.bin_of(3.2, "p.jsonl:3 alignment")
    with pytest.raises(InputError, match="not on"):
        r.bin_of(5.5)
    with pytest.raises(InputError, match="finite"):
        r.bin_of(float("nan"))
    with pytest.raises(InputError, match="no annotator scores"):
        r.histogram([])
    assert r.snap(3.3) == 3.5 and r.snap(9) == 5.0 and r.snap(-2) == 1.0


def test_unknown_dimension_is_named():
    with pytest.raises(InputError, match="'beauty'"):
        default_rubric().index("beauty")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(values=(1.0, 2.0, 4.0)), "equally spaced"),
        (dict(values=(3.0, 2.0, 1.0)), "ascending"),
        (dict(score_tokens=("a", "a", "b")), "distinct"),
        (dict(score_tokens=("a", "b")), "3 bin values but 2"),
        (dict(dimensions=()), "at least one dimension"),
        (dict(dimensions=(Dimension("x", ""), Dimension("x", ""))), "repeat"),
        (dict(dimensions=(Dimension("x", "", -1.0),)), "weights"),
    ],
)
def test_invalid_rubrics(kwargs, match):
    base = dict(dimensions=(Dimension("q", "quality"),), values=(1.0, 2.0, 3.0), score_tokens=("a", "b", "c"))
    base.update(kwargs)
    with pytest.raises(InputError, match=match):
        Rubric(**base)


def test_five_level():
    assert five_level_rubric().values == (1.0, 2.0, 3.0, 4.0, 5.0)
