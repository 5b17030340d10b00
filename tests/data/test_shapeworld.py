"""ShapeWorld: grammar, rendering, failures, annotators, oracle and the generated data set."""

import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

import zreward.data.shapeworld.generate as gen
from zreward.data.shapeworld import (
    HELD_OUT,
    SPLITS,
    Failure,
    Group,
    Spec,
    build_scene,
    degrade,
    generate_shapeworld,
    judge,
    noise_ceiling,
    prompt_text,
    render,
    sample_spec,
    true_scores,
)
from zreward.data.shapeworld.corrupt import KINDS
from zreward.data.shapeworld.oracle import alignment_agreement
from zreward.errors import InputError
from zreward.rubric import default_rubric, five_level_rubric, make_rubric

N_MODERATE = 600


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("sw") / "world"
    meta = generate_shapeworld(out, N_MODERATE, seed=11, progress=False)
    return out, meta


def _points(split_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (split_dir / "points.jsonl").read_text().splitlines()]


def _pairs(split_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (split_dir / "pairs.jsonl").read_text().splitlines()]


# --- grammar ----------------------------------------------------------------------------------
def test_prompt_text_reads_like_the_spec():
    spec = Spec((Group(2, "red", "circle"), Group(1, "blue", "square", "large")), "left of", "gray")
    assert prompt_text(spec) == (
        "two red circles and a large blue square, the circles left of the square, on a gray background"
    )
    same_shape = Spec((Group(1, "orange", "star"), Group(3, "green", "star", "small")), "above", "white")
    assert prompt_text(same_shape) == (
        "an orange star and three small green stars, the orange star above the green stars, on a white background"
    )
    assert Spec.from_dict(spec.to_dict()) == spec


def test_spec_validation_names_the_problem():
    with pytest.raises(InputError, match="pink"):
        Spec.from_dict({"groups": [{"count": 1, "color": "pink", "shape": "circle"}], "background": "white"})
    with pytest.raises(InputError, match="at most 8"):
        Spec.from_dict({"groups": [{"count": 4, "color": c, "shape": "star"} for c in ("red", "blue", "green")],
                        "background": "white"})  # fmt: skip


def test_sampled_specs_respect_the_grammar_and_held_out_combos():
    rng = np.random.default_rng(0)
    for _ in range(300):
        spec = sample_spec(rng)
        Spec.from_dict(spec.to_dict())  # validates
        assert not spec.combos & HELD_OUT
        assert sample_spec(rng, ood=True).combos & HELD_OUT


# --- scenes, failures, pixels -----------------------------------------------------------------
def test_layout_honours_the_relation_and_does_not_overlap():
    rng = np.random.default_rng(1)
    for relation in ("left of", "right of", "above", "below"):
        for _ in range(20):
            spec = Spec((Group(3, "red", "circle", "large"), Group(3, "blue", "star"), Group(2, "green", "square")),
                        relation, "white")  # fmt: skip
            scene = build_scene(spec, [], rng, 112, ood=False)
            a = [o for o in scene.objects if o.group == 0]
            b = [o for o in scene.objects if o.group == 1]
            key = (lambda o: o.x) if relation in ("left of", "right of") else (lambda o: o.y)
            first_low = relation in ("left of", "above")
            lo, hi = (a, b) if first_low else (b, a)
            assert max(key(o) for o in lo) < min(key(o) for o in hi)
            for o, p in itertools.combinations(scene.objects, 2):
                assert math.hypot(o.x - p.x, o.y - p.y) >= o.extent + p.extent
            assert all(o.extent <= o.x <= 112 - o.extent and o.extent <= o.y <= 112 - o.extent for o in scene.objects)
            assert min(o.r for o in scene.objects) >= 6.0  # still recognisable at 112 px


@pytest.mark.parametrize("kind", [k for d in KINDS for k in KINDS[d]])
def test_every_failure_changes_pixels_and_lowers_its_dimension(kind):
    dim = next(d for d in KINDS if kind in KINDS[d])
    spec = Spec((Group(2, "red", "circle"), Group(1, "blue", "square"), Group(1, "yellow", "star")), "left of", "white")
    clean_img = np.asarray(degrade(render(build_scene(spec, [], np.random.default_rng(5), 112, False), 112), [],
                                   np.random.default_rng(5)), np.float32)  # fmt: skip
    failures = [Failure(dim, kind, 1.0 if dim == "alignment" else 0.6)]
    rng = np.random.default_rng(5)
    img = np.asarray(degrade(render(build_scene(spec, failures, rng, 112, False), 112), failures, rng), np.float32)
    assert img.shape == (112, 112, 3)
    assert (np.abs(img - clean_img).max(-1) > 40).sum() >= 15, kind  # clearly changed pixels
    scores = true_scores(failures)
    assert scores[dim] < 5.0 and all(v == 5.0 for d, v in scores.items() if d != dim)
    if dim == "alignment":  # the oracle sees what went wrong; it accepts the clean render
        assert not judge(img.astype(np.uint8), spec).matches, kind
        assert judge(clean_img.astype(np.uint8), spec).matches


def test_true_scores_follow_the_documented_formula():
    fs = [Failure("fidelity", "blur", 0.5), Failure("fidelity", "noise", 1.0), Failure("alignment", "missing_group", 1.0)]
    s = true_scores(fs)
    assert s["fidelity"] == pytest.approx(5 - 2.2 * 0.5 - 2.0)
    assert s["alignment"] == pytest.approx(2.5)
    assert true_scores([Failure("fidelity", k, 1.0) for k in KINDS["fidelity"]])["fidelity"] == 1.0  # floor


def test_noise_ceiling_counts_true_ties_as_half():
    points = [{"image": f"i{k}", "meta": {"true_scores": dict.fromkeys(default_rubric().names, v)}}
              for k, v in enumerate([5.0, 3.0, 5.0])]  # fmt: skip
    pairs = [{"image_a": "i0", "image_b": "i1", "preference": "a"},  # right
             {"image_a": "i1", "image_b": "i2", "preference": "a"},  # wrong
             {"image_a": "i0", "image_b": "i2", "preference": "b"},  # true tie: one half
             {"image_a": "i0", "image_b": "i1", "preference": "tie"}]  # fmt: skip
    assert noise_ceiling(points, pairs) == pytest.approx(1.5 / 3)
    with pytest.raises(InputError, match="i9"):
        noise_ceiling(points, [{"image_a": "i0", "image_b": "i9", "preference": "a"}])


# --- the generated data set -------------------------------------------------------------------
def test_files_parse_with_the_documented_keys(world):
    out, meta = world
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert sum(s["images"] for s in meta["splits"].values()) == N_MODERATE
    assert not list(out.parent.glob(".world.*"))  # no temporary directory left behind
    for split in SPLITS:
        d = out / split
        points, pairs = _points(d), _pairs(d)
        assert len(points) == meta["splits"][split]["images"] > 0
        by_prompt = {}
        for p in points:
            assert set(p) >= {"id", "prompt", "image", "scores", "rationale", "meta"}
            assert set(p["meta"]) >= {"true_scores", "failures", "spec"}
            assert p["image"] == f"images/{p['id']}.png" and (d / p["image"]).is_file()
            assert prompt_text(Spec.from_dict(p["meta"]["spec"])) == p["prompt"]
            by_prompt.setdefault(p["prompt"], []).append(p["image"])
        assert len(pairs) == sum(len(v) * (len(v) - 1) // 2 for v in by_prompt.values())
        for q in pairs:
            assert set(q) == {"prompt", "image_a", "image_b", "preference"}
            assert q["preference"] in ("a", "b", "tie")
            assert q["image_a"] in by_prompt[q["prompt"]] and q["image_b"] in by_prompt[q["prompt"]]
        from PIL import Image

        with Image.open(d / points[0]["image"]) as im:
            assert im.size == (112, 112) and im.mode == "RGB"


def test_scores_are_on_the_grid_from_five_annotators(world):
    out, _ = world
    rubric = default_rubric()
    for split in SPLITS:
        for p in _points(out / split):
            assert list(p["scores"]) == rubric.names
            for dim, scores in p["scores"].items():
                assert len(scores) == 5
                assert sum(rubric.histogram(scores, f"{p['id']}.{dim}")) == pytest.approx(1.0)
                assert 1.0 <= p["meta"]["true_scores"][dim] <= 5.0


def test_annotators_track_the_true_scores(world):
    out, _ = world
    points = [p for s in SPLITS for p in _points(out / s)]
    for dim in default_rubric().names:
        true = np.array([p["meta"]["true_scores"][dim] for p in points])
        mean = np.array([np.mean(p["scores"][dim]) for p in points])
        assert np.corrcoef(true, mean)[0, 1] > 0.8, dim
        assert abs(np.mean(mean - true)) < 0.3  # biases roughly cancel over five raters


def test_splits_are_disjoint_by_prompt_and_ood_holds_the_held_out_combos(world):
    out, meta = world
    prompts = {s: {p["prompt"] for p in _points(out / s)} for s in SPLITS}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not prompts[a] & prompts[b], (a, b)
    assert meta["splits"]["ood"]["images"] / N_MODERATE == pytest.approx(0.1, abs=0.03)
    assert {tuple(c) for c in meta["held_out_combos"]} == HELD_OUT
    for split in SPLITS:
        for p in _points(out / split):
            spec = Spec.from_dict(p["meta"]["spec"])
            drawn = set(spec.combos)  # plus what the failures drew
            for f in p["meta"]["failures"]:
                i = f["info"]
                if f["kind"] == "extra_object":
                    drawn.add((i["color"], i["shape"]))
                elif f["kind"] == "wrong_color":
                    drawn.add((i["drawn"], spec.groups[i["group"]].shape))
                elif f["kind"] == "wrong_shape":
                    drawn.add((spec.groups[i["group"]].color, i["drawn"]))
            if split == "ood":
                assert spec.combos & HELD_OUT, p["prompt"]
            else:
                assert not drawn & HELD_OUT, p["prompt"]


def test_failure_mix_and_noise_ceiling(world):
    out, meta = world
    points = [p for s in SPLITS for p in _points(out / s)]
    pairs = [q for s in SPLITS for q in _pairs(out / s)]
    clean = np.mean([not p["meta"]["failures"] for p in points])
    assert 0.22 <= clean <= 0.38
    assert max(len(p["meta"]["failures"]) for p in points) >= 3
    true = {p["image"]: p["meta"]["true_overall"] for p in points}
    assert np.mean([true[q["image_a"]] != true[q["image_b"]] for q in pairs]) > 0.8  # most pairs differ
    ceiling = noise_ceiling(points, pairs)
    assert 0.85 <= ceiling <= 0.95, ceiling
    for split in ("train", "ood"):
        assert 0.8 <= meta["splits"][split]["noise_ceiling_hpa"] <= 0.97


def test_oracle_agrees_with_the_metadata(world):
    out, meta = world
    samples = []
    for split in SPLITS:
        for p in _points(out / split):
            if all(f["dimension"] == "alignment" for f in p["meta"]["failures"]):
                samples.append((out / split / p["image"], Spec.from_dict(p["meta"]["spec"]), p["meta"]["failures"]))
    clean = [s for s in samples if not s[2]][:60]
    failed = [s for s in samples if s[2]][:60]
    result = alignment_agreement(clean + failed)
    assert result["n_clean"] >= 40 and result["n_failed"] >= 30
    assert result["agreement"] >= 0.95, result
    assert meta["oracle_alignment_agreement"]["agreement"] >= 0.95


_KEYWORDS = {
    "count_off": ["count is wrong", "asks for"], "wrong_color": ["color", "should be"],
    "wrong_shape": ["shape", "wants"], "missing_group": ["missing", "leaves out"],
    "extra_object": ["extra", "unrequested"], "violated_relation": ["layout is wrong", "other way round"],
    "blur": ["blurry", "out of focus"], "noise": ["noise", "noisy"], "jpeg": ["compression", "jpeg"],
    "smear": ["smeared", "wavy"], "color_cast": ["tint"], "off_centre": ["corner"], "cramped": ["packed", "cramped"],
    "low_contrast": ["washed out", "contrast"], "clashing_palette": ["clash"],
    "overlap": ["interpenetrate", "overlap"], "fragmented": ["fragments", "split apart"],
    "cut_off": ["cut off", "outside"],
}  # fmt: skip


def test_rationales_describe_the_image_and_name_the_failures(world):
    out, _ = world
    texts = set()
    for p in _points(out / "train"):
        text = p["rationale"].lower()
        texts.add(text)
        for f in p["meta"]["failures"]:
            assert any(k in text for k in _KEYWORDS[f["kind"]]), (f["kind"], text)
        spec = Spec.from_dict(p["meta"]["spec"])
        if not p["meta"]["failures"]:
            for g in spec.groups:
                assert f"{g.color} {g.shape}" in text
            assert spec.background in text
            assert not any(k in text for k in ("blurry", "noisy", "missing", "interpenetrate", "cut off"))
        assert "overall" in text and all(d in text for d in default_rubric().names)
    assert len(texts) == len(_points(out / "train"))


# --- determinism, options, bad input ----------------------------------------------------------
def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.name != "meta.json":
            h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a = generate_shapeworld(tmp_path / "a", 48, seed=3, progress=False)
    b = generate_shapeworld(tmp_path / "b", 48, seed=3, progress=False)
    generate_shapeworld(tmp_path / "c", 48, seed=4, progress=False)
    for split in SPLITS:
        assert (tmp_path / "a" / split / "points.jsonl").read_bytes() == (tmp_path / "b" / split / "points.jsonl").read_bytes()
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert a == b


def test_options_image_size_annotators_and_rubric(tmp_path):
    rubric = five_level_rubric()
    meta = generate_shapeworld(tmp_path / "w", 10, seed=0, image_size=128, images_per_prompt=3, rubric=rubric,
                               n_annotators=7, progress=False)  # fmt: skip
    assert meta["config"]["image_size"] == 128
    points = [p for s in SPLITS for p in _points(tmp_path / "w" / s)]
    assert len(points) == 10
    from PIL import Image

    with Image.open(tmp_path / "w" / "train" / points[0]["image"]) as im:
        assert im.size == (128, 128)
    for p in points:
        assert all(len(v) == 7 and all(x in rubric.values for x in v) for v in p["scores"].values())


def test_bad_input_raises_and_writes_nothing(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="n must be"):
        generate_shapeworld(tmp_path / "x", 0, progress=False)
    with pytest.raises(InputError, match="n_annotators"):
        generate_shapeworld(tmp_path / "x", 8, n_annotators=0, progress=False)
    with pytest.raises(InputError, match="dimensions"):
        generate_shapeworld(tmp_path / "x", 8, rubric=make_rubric([("beauty", "b")], (1.0, 2.0)), progress=False)
    calls = []

    def failing_render(scene, size):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("disk full")
        return render(scene, size)

    monkeypatch.setattr(gen, "render", failing_render)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_shapeworld(tmp_path / "x", 40, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary directory
