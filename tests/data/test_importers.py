"""Importers: small fixtures in each published schema become datasets that load with load_dataset."""

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from zreward.data import import_dataset, load_dataset
from zreward.data.importers import imagereward_score
from zreward.errors import InputError
from zreward.rubric import default_rubric, make_rubric


def save(path: Path, shade: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (shade, 90, 30)).save(path, format=fmt)
    return path


def jpeg_bytes(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (shade, shade, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def prefs(ds):
    return [(q.prompt, q.image_a.name, q.image_b.name, q.preference) for q in ds.pairs]


def no_leftovers(out: Path) -> bool:
    """Nothing at `out` and no temporary sibling left behind."""
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# --- HPDv2 ---------------------------------------------------------------------------------------
@pytest.fixture
def hpd(tmp_path):
    src = tmp_path / "HPDv2"
    for i in range(4):
        save(src / "test" / f"{i:05d}.jpg", 40 * i, "JPEG")
        save(src / "train" / f"{i:05d}.jpg", 40 * i, "JPEG")
    test = [
        {"prompt": "a castle", "image_path": ["00000.jpg", "00001.jpg", "00002.jpg"], "rank": [2, 1, 2]},
        {"prompt": "a dog", "image_path": ["00003.jpg", "00000.jpg"], "raw_annotations": [[1, 2], [2, 1], [1, 2]],
         "user_hash": "u"},
    ]
    train = [
        {"prompt": "a cat", "image_path": ["00000.jpg", "00001.jpg"], "human_preference": [1, 0]},
        {"prompt": "a cat", "image_path": ["00002.jpg", "00003.jpg"], "human_preference": [0, 1]},
    ]
    (src / "test.json").write_text(json.dumps(test))
    (src / "train.json").write_text(json.dumps(train))
    return src


def test_hpdv2_test_ranks(hpd, tmp_path):
    rep = import_dataset("hpdv2", hpd, tmp_path / "out", split="test")
    ds = load_dataset(tmp_path / "out")
    assert len(ds) == 0 and rep.points == 0 and rep.pairs == 4 and rep.images == 4
    assert prefs(ds) == [
        ("a castle", "00000.jpg", "00001.jpg", "b"),  # rank 1 (00001) is best
        ("a castle", "00000.jpg", "00002.jpg", "tie"),
        ("a castle", "00001.jpg", "00002.jpg", "a"),
        ("a dog", "00003.jpg", "00000.jpg", "a"),  # mean annotator rank 4/3 vs 5/3
    ]
    # Copied: the output is self-contained.
    assert all(q.image_a.parent == tmp_path / "out" / "images" for q in ds.pairs)
    assert (tmp_path / "out" / "images" / "00002.jpg").read_bytes() == (hpd / "test" / "00002.jpg").read_bytes()


def test_hpdv2_train_preferences_and_reference_mode(hpd, tmp_path):
    rep = import_dataset("hpdv2", hpd / "train.json", tmp_path / "out", copy_images=False)
    ds = load_dataset(tmp_path / "out")
    assert rep.pairs == 2 and not (tmp_path / "out" / "images").exists()
    assert prefs(ds) == [("a cat", "00000.jpg", "00001.jpg", "a"), ("a cat", "00002.jpg", "00003.jpg", "b")]
    assert ds.pairs[0].image_a == hpd / "train" / "00000.jpg"  # referenced where it is


@pytest.mark.parametrize("entry,message", [
    ({"prompt": "x", "image_path": ["00000.jpg", "zz.jpg"], "rank": [1, 2]}, r"test.json entry 1: image 'zz.jpg' not found"),
    ({"prompt": "x", "image_path": ["00000.jpg", "00001.jpg"], "rank": [1]}, r"test.json entry 1: 'rank' must be a list of 2"),
    ({"prompt": "x", "image_path": ["00000.jpg", "00001.jpg"]}, r"test.json entry 1: needs 'human_preference'"),
    ({"prompt": "x", "image_path": ["00000.jpg"], "rank": [1]}, r"test.json entry 1: 'image_path' must be a list of at least 2"),
    ({"image_path": ["00000.jpg", "00001.jpg"], "rank": [1, 2]}, r"test.json entry 1: missing key 'prompt'"),
    ({"prompt": "x", "image_path": ["00000.jpg", "00001.jpg"], "rank": [1, "2"]}, r"test.json entry 1: rank must be a finite"),
])
def test_hpdv2_bad_entries(hpd, tmp_path, entry, message):
    rows = json.loads((hpd / "test.json").read_text())[:1] + [entry]
    (hpd / "test.json").write_text(json.dumps(rows))
    with pytest.raises(InputError, match=message):
        import_dataset("hpdv2", hpd, tmp_path / "out", split="test")
    assert no_leftovers(tmp_path / "out")


def test_hpdv2_card_layout(hpd, tmp_path):
    """The dataset card's field names: train.json's file_path, raw_annotations as {rank, user_hash} objects."""
    train = [{"prompt": "a cat", "file_path": ["00000.jpg", "00001.jpg"], "human_preference": [0, 1]}]
    (hpd / "train.json").write_text(json.dumps(train))
    assert prefs(load_dataset(import_dataset("hpdv2", hpd, tmp_path / "a", split="train").out)) == [
        ("a cat", "00000.jpg", "00001.jpg", "b")]
    test = [{"prompt": "a dog", "image_path": ["00003.jpg", "00000.jpg"],
             "raw_annotations": [{"rank": [2, 1], "user_hash": "u1"}, {"rank": [2, 1], "user_hash": "u2"}]}]
    (hpd / "test.json").write_text(json.dumps(test))
    assert prefs(load_dataset(import_dataset("hpdv2", hpd, tmp_path / "b", split="test").out)) == [
        ("a dog", "00003.jpg", "00000.jpg", "b")]


def test_hpdv2_directory_needs_a_split(hpd, tmp_path):
    with pytest.raises(InputError, match=r"holds test.json and train.json; choose one with split"):
        import_dataset("hpdv2", hpd, tmp_path / "out")
    (hpd / "train.json").unlink()
    assert import_dataset("hpdv2", hpd, tmp_path / "out").pairs == 4  # one split: no choice to make


def test_hpdv2_bad_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no test.json or train.json"):
        import_dataset("hpdv2", tmp_path / "empty", tmp_path / "out")
    (tmp_path / "test.json").write_text('[{"prompt": "x",\n "image_path": ]')
    with pytest.raises(InputError, match=r"test.json:2: malformed JSON"):
        import_dataset("hpdv2", tmp_path / "test.json", tmp_path / "out")


# --- Pick-a-Pic ----------------------------------------------------------------------------------
def pickapic_rows():
    a, b, c = jpeg_bytes(10), jpeg_bytes(120), jpeg_bytes(240)
    row = dict(caption="a fox", jpg_0=a, jpg_1=b, image_0_uid="u-a", image_1_uid="u-b", has_label=True, are_different=True)
    return [
        {**row, "label_0": 1.0, "label_1": 0.0},
        {**row, "jpg_1": c, "image_1_uid": "u-c", "label_0": 0.0, "label_1": 1.0},
        {**row, "caption": "a hen", "label_0": 0.5, "label_1": 0.5},
        {**row, "label_0": 0.0, "label_1": 0.0, "has_label": False},
        {**row, "jpg_1": a, "image_1_uid": "u-a", "label_0": 1.0, "label_1": 0.0, "are_different": False},
    ]


def test_pickapic_parquet(tmp_path):
    rows = pickapic_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-0.parquet")
    rep = import_dataset("pickapic", tmp_path / "train-0.parquet", tmp_path / "out")
    ds = load_dataset(tmp_path / "out")
    assert prefs(ds) == [("a fox", "u-a.jpg", "u-b.jpg", "a"), ("a fox", "u-a.jpg", "u-c.jpg", "b"),
                         ("a hen", "u-a.jpg", "u-b.jpg", "tie")]
    assert rep.images == 3 and rep.skipped == {"unlabelled": 1, "same image in a pair": 1}
    written = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert written == ["u-a.jpg", "u-b.jpg", "u-c.jpg"]  # each image once, named by uid
    assert (tmp_path / "out" / "images" / "u-c.jpg").read_bytes() == rows[1]["jpg_1"]


def test_pickapic_rows_and_bad_bytes(tmp_path):
    rows = pickapic_rows()[:1]
    rows[0].pop("image_0_uid")  # no uid: named by content hash
    rep = import_dataset("pickapic", rows, tmp_path / "out")
    assert rep.pairs == 1 and load_dataset(tmp_path / "out").pairs[0].image_b.name == "u-b.jpg"
    bad = pickapic_rows()[:2]
    bad[1]["jpg_1"] = b"not an image"
    with pytest.raises(InputError, match=r"pickapic row 1 jpg_1: not a readable image"):
        import_dataset("pickapic", bad, tmp_path / "out2")
    assert no_leftovers(tmp_path / "out2")
    bad[1] = {**pickapic_rows()[1], "label_1": None}
    with pytest.raises(InputError, match=r"pickapic row 1: label_1 must be a finite number"):
        import_dataset("pickapic", bad, tmp_path / "out2")


# --- ImageRewardDB -------------------------------------------------------------------------------
def imagereward_fixture(root: Path) -> list[dict]:
    part = root / "images" / "train" / "train_1"
    rows = []
    for i, (rank, align, fid) in enumerate([(1, 7, 6), (2, 4, 1), (2, 3, 5), (3, 2, None)]):
        save(part / f"img{i}.webp", 50 * i, "WEBP")
        row = {"image_path": f"images/train/train_1/img{i}.webp", "prompt_id": "000864-0061", "prompt": "a holy woman",
               "classification": "People", "image_amount_in_total": 4, "rank": rank, "overall_rating": 8 - rank,
               "image_text_alignment_rating": align, "fidelity_rating": fid}
        rows.append(row)
    (part / "train_1.json").write_text(json.dumps(rows))
    return rows


def test_imagerewarddb_json_layout(tmp_path):
    root = tmp_path / "ImageRewardDB"
    imagereward_fixture(root)
    json_file = root / "images" / "train" / "train_1" / "train_1.json"
    rep = import_dataset("imagerewarddb", json_file, tmp_path / "out")
    ds = load_dataset(tmp_path / "out")
    assert rep.points == 4 and rep.pairs == 6
    assert [p.scores for p in ds.points] == [
        {"alignment": [5.0], "fidelity": [4.5]}, {"alignment": [3.0], "fidelity": [1.0]},
        {"alignment": [2.5], "fidelity": [3.5]}, {"alignment": [1.5]},
    ]
    assert ds.points[0].extra == {"meta": {"prompt_id": "000864-0061", "overall_rating": 7, "rank": 1,
                                           "classification": "People"}}
    got = {(q.image_a.stem, q.image_b.stem): q.preference for q in ds.pairs}
    assert got == {("img0", "img1"): "a", ("img0", "img2"): "a", ("img0", "img3"): "a", ("img1", "img2"): "tie",
                   ("img1", "img3"): "a", ("img2", "img3"): "a"}
    assert (tmp_path / "out" / "images" / "images" / "train" / "train_1" / "img0.webp").is_file()


def test_imagerewarddb_parquet_directory(tmp_path):
    root = tmp_path / "ImageRewardDB"
    rows = imagereward_fixture(root)
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata-train.parquet")
    rep = import_dataset("imagerewarddb", root, tmp_path / "out")  # parquet wins over the json copies
    assert (rep.points, rep.pairs, rep.skipped) == (4, 6, {})
    _, _, _, gap = load_dataset(tmp_path / "out").pair_index()
    assert gap[0].item() == pytest.approx((5.0 + 4.5) / 2 - (3.0 + 1.0) / 2)


def test_split_selection(tmp_path):
    """A directory holding several splits needs one named: merging would leak test prompts into training."""
    root = tmp_path / "pickapic" / "data"
    rows = pickapic_rows()[:3]
    root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:2]), root / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), root / "test_unique-00000-of-00001.parquet")
    with pytest.raises(InputError, match=r"several splits \(test_unique, train\); choose one with split"):
        import_dataset("pickapic", root, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")
    assert {q.prompt for q in load_dataset(import_dataset("pickapic", root, tmp_path / "tr", split="train").out).pairs} == {"a fox"}
    assert [q.prompt for q in load_dataset(import_dataset("pickapic", root, tmp_path / "te", split="test_unique").out).pairs] == ["a hen"]
    with pytest.raises(InputError, match=r"split='train' applies to a dataset folder; this is one file"):
        import_dataset("pickapic", root / "train-00000-of-00002.parquet", tmp_path / "out", split="train")
    with pytest.raises(InputError, match=r"no files of split 'validation' \(splits found: \['test_unique', 'train'\]\)"):
        import_dataset("pickapic", root, tmp_path / "out", split="validation")

    db = tmp_path / "ImageRewardDB"
    train = imagereward_fixture(db)
    pq.write_table(pa.Table.from_pylist(train), db / "metadata-train.parquet")
    pq.write_table(pa.Table.from_pylist([{**train[0], "prompt_id": "v", "prompt": "held out"}]), db / "metadata-validation.parquet")
    with pytest.raises(InputError, match=r"several splits \(train, validation\)"):
        import_dataset("imagerewarddb", db, tmp_path / "db_out")
    rep = import_dataset("imagerewarddb", db, tmp_path / "db_out", split="train")
    assert rep.points == 4 and "held out" not in {p.prompt for p in load_dataset(rep.out).points}


def test_imagerewarddb_partial_download_and_flat_extraction(tmp_path):
    db = tmp_path / "ImageRewardDB"
    rows = imagereward_fixture(db)
    rows.append({**rows[3], "image_path": "images/train/train_2/absent.webp", "prompt_id": "x", "prompt": "not here"})
    pq.write_table(pa.Table.from_pylist(rows), db / "metadata-train.parquet")
    with pytest.raises(InputError, match=r"row 4: image 'images/train/train_2/absent.webp' not found.*--skip-missing"):
        import_dataset("imagerewarddb", db, tmp_path / "out")
    rep = import_dataset("imagerewarddb", db, tmp_path / "out", skip_missing=True)
    assert (rep.points, rep.pairs, rep.skipped) == (4, 6, {"image not found": 1})
    # The published zips extract flat (json beside the images): found by file name below the root.
    flat = tmp_path / "flat"
    (db / "images" / "train" / "train_1").rename(flat)
    rep = import_dataset("imagerewarddb", flat / "train_1.json", tmp_path / "flat_out")
    assert (rep.points, rep.pairs) == (4, 6)


def test_imagereward_scale_mapping():
    r = default_rubric()
    assert [imagereward_score(v, r) for v in range(1, 8)] == [1.0, 1.5, 2.5, 3.0, 3.5, 4.5, 5.0]
    assert [imagereward_score(v, make_rubric([("alignment", "")], [1, 2, 3])) for v in (1, 4, 7)] == [1, 2, 3]


def test_imagerewarddb_bad_input(tmp_path):
    root = tmp_path / "db"
    rows = imagereward_fixture(root)
    rows[2]["fidelity_rating"] = 8
    with pytest.raises(InputError, match=r"imagerewarddb row 2: fidelity_rating 8 is outside"):
        import_dataset("imagerewarddb", rows, tmp_path / "out", image_root=root)
    assert no_leftovers(tmp_path / "out")
    with pytest.raises(InputError, match=r"the rubric lacks \['fidelity'\]"):
        import_dataset("imagerewarddb", rows, tmp_path / "out", rubric=make_rubric([("alignment", "")], [1, 2, 3]))
    rows[2]["fidelity_rating"], rows[1]["image_path"] = 3, "images/nowhere.webp"
    with pytest.raises(InputError, match=r"imagerewarddb row 1: image 'images/nowhere.webp' not found"):
        import_dataset("imagerewarddb", rows, tmp_path / "out", image_root=root)


# --- shared behaviour ----------------------------------------------------------------------------
def test_output_guards(hpd, tmp_path):
    out = tmp_path / "out"
    import_dataset("hpdv2", hpd, out, split="test")
    with pytest.raises(InputError, match="already exists"):
        import_dataset("hpdv2", hpd, out, split="train")
    assert import_dataset("hpdv2", hpd, out, split="train", overwrite=True).pairs == 2
    assert len(load_dataset(out).pairs) == 2  # replaced, not merged
    with pytest.raises(InputError, match="would replace its own source"):
        import_dataset("hpdv2", hpd / "test.json", hpd, overwrite=True)
    with pytest.raises(InputError, match=r"unknown dataset kind 'hpd'.*'hpdv2'"):
        import_dataset("hpd", hpd, out)
