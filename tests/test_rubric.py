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
    with pytest.raises(InputError, match=r"p.jsonl:5 alignment: score 10000.*\.\.\. is not a finite number"):
        r.bin_of(10**400, "p.jsonl:5 alignment")  # a JSON integer too large for a float
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
        (dict(dimensions=(Dimension("x", "", float("nan")),)), "weights must be finite"),
    ],
)
def test_invalid_rubrics(kwargs, match):
    base = dict(dimensions=(Dimension("q", "quality"),), values=(1.0, 2.0, 3.0), score_tokens=("a", "b", "c"))
    base.update(kwargs)
    with pytest.raises(InputError, match=match):
        Rubric(**base)


def test_five_level():
    assert five_level_rubric().values == (1.0, 2.0, 3.0, 4.0, 5.0)


def test_short_form_and_same_scale(tmp_path):
    """The hand-written form (names only, no score tokens) loads from a file; check_same_scale compares
    what labels and scores must share, and load_rubric names the file it cannot read."""
    from zreward.rubric import load_rubric

    path = tmp_path / "rubric.json"
    path.write_text('{"dimensions": ["quality", {"name": "safety", "weight": 3}], "values": [1, 2, 3, 4, 5]}')
    r = load_rubric(path)
    assert r.names == ["quality", "safety"] and r.weights == pytest.approx([0.25, 0.75])
    assert r.values == (1.0, 2.0, 3.0, 4.0, 5.0) and len(set(r.score_tokens)) == 5
    assert Rubric.from_json(r.to_json()) == r
    r.check_same_scale(make_rubric([("quality", "other words"), ("safety", "s", 3.0)], (1, 2, 3, 4, 5)), "x")
    with pytest.raises(InputError, match="x: the rubrics differ in weights"):
        r.check_same_scale(make_rubric([("quality", "q"), ("safety", "s")], (1, 2, 3, 4, 5)), "x")
    with pytest.raises(InputError, match="y: the rubrics differ in values"):
        default_rubric().check_same_scale(five_level_rubric(), "y")
    with pytest.raises(InputError, match="differ in names"):
        default_rubric().check_same_scale(five_level_rubric([("quality", "q")]), "y")
    for text, needle in (("{", "malformed rubric"), ("[1]", "JSON object"), ('{"values": [1, 2]}', "malformed rubric"),
                         ('{"dimensions": ["a"], "values": [1, 2, 4]}', "equally spaced"),
                         ('{"dimensions": "quality", "values": [1, 2, 3]}', "'dimensions' must be a list, got str"),
                         ('{"dimensions": [{"name": "q", "weight": NaN}], "values": [1, 2]}', "weights must be finite"),
                         ('{"dimensions": [{"name": "q", "weight": 1%s}], "values": [1, 2]}' % ("0" * 400), "weights must be finite"),
                         ('{"dimensions": ["q"], "values": [1, 1%s]}' % ("0" * 400), "malformed rubric \\(OverflowError")):
        path.write_text(text)
        with pytest.raises(InputError, match=needle) as e:
            load_rubric(path)
        assert str(path) in str(e.value)
