"""The dataset format: round trips, human score tensors, derived pairs, splits and every bad input."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from zreward.data import (
    Pair,
    Point,
    PreferenceDataset,
    derive_pairs,
    load_dataset,
    split_by_prompt,
    write_dataset,
)
from zreward.errors import InputError
from zreward.rubric import default_rubric, make_rubric

R = default_rubric()  # alignment, fidelity, aesthetics, plausibility; 1.0 ... 5.0 step 0.5


def png(path: Path, shade: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade, 64, 200)).save(path)
    return path


def write_lines(path: Path, rows) -> Path:
    """Rows as JSONL; str rows are written verbatim (for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "ds"
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        png(d / name)
    return d


def point(image="a.png", prompt="a red cube", **scores):
    return {"prompt": prompt, "image": image, "scores": scores or {"alignment": [4.0, 4.5]}}


# --- round trip ----------------------------------------------------------------------------------
def test_write_load_round_trip(tmp_path):
    d = tmp_path / "ds"
    imgs = {"img/a.png": Image.new("RGB", (12, 12), "red"), "img/b.png": Image.new("RGB", (12, 12), "blue")}
    pts = [
        Point("p0", "two cats", d / "img/a.png", {"alignment": [4.0, 4.5], "fidelity": [3.0]}, "sharp", {"meta": {"m": 1}}),
        Point(None, "two cats", d / "img/b.png", {"alignment": [2.0]}),
    ]
    write_dataset(d, pts, images=imgs)
    assert not (d / "pairs.jsonl").exists()
    ds = load_dataset(d)
    assert [(p.id, p.prompt, p.image, p.scores, p.rationale, p.extra) for p in ds.points] == [
        (p.id, p.prompt, p.image, p.scores, p.rationale, p.extra) for p in pts
    ]
    assert ds.derived_pairs and ds.pairs == [Pair("two cats", d / "img/a.png", d / "img/b.png", "a")]
    # Paths inside the directory are written relative, so the saved dataset can move.
    assert json.loads((d / "points.jsonl").read_text().splitlines()[0])["image"] == "img/a.png"
    again = load_dataset(ds.save(tmp_path / "copy"))
    assert [p.scores for p in again.points] == [p.scores for p in pts] and again.pairs == ds.pairs
    assert again.points[0].image == d / "img/a.png"  # outside the new root: written absolute


def test_rubric_json_declares_the_scale(tmp_path):
    """A dataset on its own scale carries rubric.json: loading reads the scores on it (off-grid scores and
    unknown dimensions are still errors), a model's rubric must agree with it, and a rewrite without a
    rubric removes it."""
    from zreward.rubric import five_level_rubric

    d = tmp_path / "ds"
    five = five_level_rubric(dimensions=[("quality", "q"), ("safety", "s")])
    rows = [point("a.png", quality=[4.0, 5.0], safety=[2.0]), point("b.png", quality=[1.0])]
    write_dataset(d, rows, images={"a.png": Image.new("RGB", (8, 8)), "b.png": Image.new("RGB", (8, 8))}, rubric=five)
    ds = load_dataset(d)
    assert ds.rubric == five and ds.pairs[0].preference == "a"
    assert load_dataset(ds.save(tmp_path / "copy")).rubric == five
    with pytest.raises(InputError, match="the model.s rubric and .*rubric.json: the rubrics differ in names"):
        load_dataset(d, R)
    write_lines(d / "points.jsonl", [point("a.png", quality=[3.5])])
    with pytest.raises(InputError, match=r"points.jsonl:1 quality: score 3.5 is not on"):
        load_dataset(d)
    write_lines(d / "points.jsonl", [point("a.png", alignment=[3.0])])
    with pytest.raises(InputError, match="unknown dimension 'alignment'"):
        load_dataset(d)
    (d / "rubric.json").write_text('{"dimensions": ["alignment"], "values": [1, 2, 3]}')  # the short form
    assert load_dataset(d).rubric.values == (1.0, 2.0, 3.0)
    (d / "rubric.json").write_text("{not json")
    with pytest.raises(InputError, match="rubric.json:1: malformed rubric"):
        load_dataset(d)
    write_dataset(d, rows[:1])
    assert not (d / "rubric.json").exists()


def test_explicit_pairs_and_pairs_only(root):
    pairs = [Pair("x", root / "a.png", root / "b.png", "tie"), Pair("x", root / "c.png", root / "sub/d.png", "b")]
    write_dataset(root, [], pairs)
    ds = load_dataset(root)
    assert len(ds) == 0 and ds.pairs == pairs and not ds.derived_pairs
    ia, ib, pref, gap = ds.pair_index()
    assert ia.tolist() == [0, 2] and ib.tolist() == [1, 3] and pref == ["tie", "b"]
    assert torch.isnan(gap).all()  # no points: the gap is unknown, the pairs still count for HPA


def test_paths_subfolder_parent_and_absolute(root, tmp_path):
    outside = png(tmp_path / "elsewhere" / "e.png")
    write_lines(root / "points.jsonl", [point("sub/d.png"), point("../elsewhere/e.png"), point(str(outside), "p2")])
    ds = load_dataset(root)
    assert ds.points[0].image == root / "sub" / "d.png"
    assert ds.points[1].image == outside and ds.points[2].image == outside
    assert len(ds.images) == 3  # same file under two prompts: two scoring units


# --- human scores --------------------------------------------------------------------------------
def test_histograms_means_and_overall(root):
    rubric = make_rubric([("alignment", "", 3.0), ("fidelity", "", 1.0)], [1.0, 2.0, 3.0])
    write_lines(root / "points.jsonl", [
        point("a.png", alignment=[1.0, 3.0, 3.0, 2.0], fidelity=[1.0]),
        point("b.png", fidelity=[2.0, 3.0]),
    ])
    ds = load_dataset(root, rubric)
    probs, mask = ds.histograms()
    assert probs.dtype == torch.float32 and probs.shape == (2, 2, 3)
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.25, 0.25, 0.5]))
    torch.testing.assert_close(probs[1, 0], torch.zeros(3))
    assert mask.tolist() == [[True, True], [False, True]]
    means = ds.human_means()
    assert means.dtype == torch.float64 and math.isnan(means[1, 0])
    torch.testing.assert_close(means[0], torch.tensor([2.25, 1.0], dtype=torch.float64))
    # Weights 3:1 over present dims; point 1 has fidelity only, so its overall is its fidelity mean.
    torch.testing.assert_close(ds.human_overall(), torch.tensor([(3 * 2.25 + 1.0) / 4, 2.5], dtype=torch.float64))


def test_derive_pairs_uses_common_dimensions(root):
    pts = [
        Point(None, "p", root / "a.png", {"alignment": [5.0], "fidelity": [1.0]}),  # overall 3.0
        Point(None, "p", root / "b.png", {"alignment": [3.0]}),  # overall 3.0, but lower on alignment
        Point(None, "p", root / "c.png", {"fidelity": [1.0]}),  # ties a on fidelity, nothing shared with b
        Point(None, "q", root / "sub/d.png", {"alignment": [2.0]}),  # alone under its prompt
    ]
    pairs = derive_pairs(pts, R)
    assert [(q.image_a.name, q.image_b.name, q.preference) for q in pairs] == [("a.png", "b.png", "a"), ("a.png", "c.png", "tie")]
    ds = PreferenceDataset(root, R, pts, pairs)
    _, _, _, gap = ds.pair_index()
    torch.testing.assert_close(gap, torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_pair_index_with_points_and_unscored_images(root):
    write_lines(root / "points.jsonl", [point("a.png", alignment=[4.0]), point("b.png", alignment=[2.0, 3.0])])
    write_lines(root / "pairs.jsonl", [
        {"prompt": "a red cube", "image_a": "b.png", "image_b": "a.png", "preference": "b"},
        {"prompt": "a red cube", "image_a": "a.png", "image_b": "c.png", "preference": "a"},
    ])
    ds = load_dataset(root)
    assert [r.path.name for r in ds.images] == ["a.png", "b.png", "c.png"]
    assert ds.point_of_image.tolist() == [0, 1, -1]
    ia, ib, pref, gap = ds.pair_index()
    assert ia.tolist() == [1, 0] and ib.tolist() == [0, 2] and pref == ["b", "a"]
    assert gap[0].item() == pytest.approx(-1.5) and math.isnan(gap[1])


# --- splits --------------------------------------------------------------------------------------
def test_split_by_prompt(root):
    pts = [Point(None, f"prompt {i}", root / n, {"alignment": [3.0]}) for i in range(10) for n in ("a.png", "b.png")]
    ds = PreferenceDataset(root, R, pts, derive_pairs(pts, R), derived_pairs=True)
    train, val, test = split_by_prompt(ds, (0.8, 0.1, 0.1), seed=0)
    sets = [set(s.prompts) for s in (train, val, test)]
    assert [len(s) for s in sets] == [8, 1, 1] and set.union(*sets) == set(ds.prompts)
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(train) == 16 and len(train.pairs) == 8 and all(q.prompt in sets[0] for q in train.pairs)
    assert [set(s.prompts) for s in split_by_prompt(ds, seed=0)] == sets
    assert [set(s.prompts) for s in split_by_prompt(ds, seed=1)] != sets
    # Few prompts: each positive fraction still gets one.
    small = ds.subset(["prompt 0", "prompt 1", "prompt 2"])
    assert [len(s.prompts) for s in split_by_prompt(small)] == [1, 1, 1]


@pytest.mark.parametrize("fractions", [(0.5, 0.2), (0.9, 0.2, -0.1), (float("nan"), 0.5, 0.5), ()])
def test_split_rejects_bad_fractions(root, fractions):
    ds = PreferenceDataset(root, R, [Point(None, "p", root / "a.png", {"alignment": [3.0]})], [])
    with pytest.raises(InputError, match="fractions"):
        split_by_prompt(ds, fractions)


# --- bad input: every message names the file and line --------------------------------------------
GOOD = point()
BAD_POINTS = [
    ('{"prompt": "x", "image": "a.png", "scores": {"alignment": [3.0]}', r"points.jsonl:2: malformed JSON"),
    ({"image": "a.png", "scores": {"alignment": [3.0]}}, r"points.jsonl:2: missing key 'prompt'"),
    ({"prompt": "x", "scores": {"alignment": [3.0]}}, r"points.jsonl:2: missing key 'image'"),
    ({"prompt": "x", "image": "a.png"}, r"points.jsonl:2: missing key 'scores'"),
    ({**GOOD, "prompt": 7}, r"points.jsonl:2: 'prompt' must be a string"),
    ({**GOOD, "prompt": "  "}, r"points.jsonl:2: 'prompt' is empty"),
    ({**GOOD, "image": "missing.png"}, r"points.jsonl:2: image 'missing.png' not found"),
    ({**GOOD, "scores": {"beauty": [3.0]}}, r"points.jsonl:2: unknown dimension 'beauty'.*'alignment', 'fidelity'"),
    ({**GOOD, "scores": {"fidelity": [3.0, 3.25]}}, r"points.jsonl:2 fidelity: score 3.25 is not on"),
    ({**GOOD, "scores": {"fidelity": [5.5]}}, r"points.jsonl:2 fidelity: score 5.5 is not on"),
    ({**GOOD, "scores": {"fidelity": []}}, r"points.jsonl:2 fidelity: empty score list"),
    ({**GOOD, "scores": {"fidelity": 3.0}}, r"points.jsonl:2 fidelity: scores must be a list"),
    ({**GOOD, "scores": {}}, r"points.jsonl:2: 'scores' must be a non-empty object"),
    ({**GOOD, "scores": {"fidelity": None}}, r"points.jsonl:2: 'scores' has no dimension with scores"),
    ({**GOOD, "rationale": 3}, r"points.jsonl:2: 'rationale' must be a string"),
    ({**GOOD, "id": 5}, r"points.jsonl:2: 'id' must be a non-empty string"),
    ("[1, 2]", r"points.jsonl:2: expected a JSON object"),
    ({**GOOD, "image": "b.png"}, None),  # control: a valid second line loads
]


@pytest.mark.parametrize("bad,message", BAD_POINTS)
def test_bad_points(root, bad, message):
    write_lines(root / "points.jsonl", [GOOD, bad])
    if message is None:
        assert len(load_dataset(root)) == 2
        return
    with pytest.raises(InputError, match=message) as e:
        load_dataset(root)
    assert str(root / "points.jsonl") in str(e.value)


def test_byte_order_mark_null_dimensions_and_encodings(root):
    """A UTF-8 byte-order mark (Windows editors) is read past; null for a dimension means unrated (how
    pandas writes a missing value); bytes that are not UTF-8 are an error naming the line."""
    lines = [json.dumps(point("a.png", alignment=[4.0], fidelity=None)), json.dumps(point("b.png", alignment=[2.0]))]
    (root / "points.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    ds = load_dataset(root)
    assert [p.scores for p in ds.points] == [{"alignment": [4.0]}, {"alignment": [2.0]}]
    assert [q.preference for q in ds.pairs] == ["a"]
    (root / "points.jsonl").write_bytes(lines[0].encode() + b"\n" + lines[1].replace("a red", "caf\xe9").encode("latin-1"))
    with pytest.raises(InputError, match=r"points.jsonl:2: not UTF-8 text"):
        load_dataset(root)


def test_duplicates_name_both_lines(root):
    write_lines(root / "points.jsonl", [{**GOOD, "id": "x"}, {**GOOD, "image": "b.png", "id": "x"}])
    with pytest.raises(InputError, match=r"points.jsonl:2: duplicate id 'x' \(first at line 1\)"):
        load_dataset(root)
    write_lines(root / "points.jsonl", [GOOD, point("c.png"), GOOD])
    with pytest.raises(InputError, match=r"points.jsonl:3: image 'a.png' already has a point.*line 1"):
        load_dataset(root)


PAIR = {"prompt": "p", "image_a": "a.png", "image_b": "b.png", "preference": "a"}
BAD_PAIRS = [
    ({**PAIR, "preference": "A"}, r"pairs.jsonl:2: preference must be one of \['a', 'b', 'tie'\], got 'A'"),
    ({**PAIR, "preference": None}, r"pairs.jsonl:2: preference must be one of"),
    ({k: v for k, v in PAIR.items() if k != "preference"}, r"pairs.jsonl:2: missing key 'preference'"),
    ({**PAIR, "image_b": "a.png"}, r"pairs.jsonl:2: image_a and image_b are the same image"),
    ({**PAIR, "image_b": "./sub/../a.png"}, r"pairs.jsonl:2: image_a and image_b are the same image"),
    ({**PAIR, "image_b": "nope.png"}, r"pairs.jsonl:2: image_b 'nope.png' not found"),
    ({**PAIR, "prompt": ""}, r"pairs.jsonl:2: 'prompt' is empty"),
    ({**PAIR, "image_a": 3}, r"pairs.jsonl:2: 'image_a' must be a string"),
    ("{oops", r"pairs.jsonl:2: malformed JSON"),
]


@pytest.mark.parametrize("bad,message", BAD_PAIRS)
def test_bad_pairs(root, bad, message):
    write_lines(root / "pairs.jsonl", [PAIR, bad])
    with pytest.raises(InputError, match=message):
        load_dataset(root)


def test_missing_files_and_check_images(tmp_path, root):
    with pytest.raises(InputError, match="dataset directory not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no points.jsonl"):
        load_dataset(root)
    for split in ("train", "test"):  # a folder of splits: the error names them
        (tmp_path / "splits" / split).mkdir(parents=True)
        (tmp_path / "splits" / split / "points.jsonl").write_text("")
    with pytest.raises(InputError, match=r"holds the splits test, train: name one, e.g. .*splits/test"):
        load_dataset(tmp_path / "splits")
    write_lines(root / "points.jsonl", [point("gone.png")])
    with pytest.raises(InputError, match=r"points.jsonl:1: image 'gone.png' not found"):
        load_dataset(root)
    assert load_dataset(root, check_images=False).points[0].image == root / "gone.png"
    (root / "points.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no points and no pairs"):
        load_dataset(root)


# --- writing -------------------------------------------------------------------------------------
def test_write_replaces_stale_files_and_is_atomic(root):
    pairs = [Pair("p", root / "a.png", root / "b.png", "a")]
    pts = [Point(None, "p", root / "a.png", {"alignment": [3.0]}), Point(None, "p", root / "b.png", {"alignment": [4.0]})]
    write_dataset(root, pts, pairs)
    assert load_dataset(root).pairs == pairs
    write_dataset(root, pts)  # no pairs given: the old pairs.jsonl must not survive
    assert load_dataset(root).pairs[0].preference == "b"
    before = (root / "points.jsonl").read_text()
    with pytest.raises(TypeError):  # an unserializable extra fails the write ...
        write_dataset(root, [Point(None, "p", root / "a.png", {"alignment": [3.0]}, None, {"bad": object()})])
    assert (root / "points.jsonl").read_text() == before  # ... and leaves the old file whole
    assert not [f for f in root.iterdir() if f.name.endswith(".tmp")]
    with pytest.raises(InputError, match="nothing to write"):
        write_dataset(root / "empty", [], [])
