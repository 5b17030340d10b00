"""The CLI through click's CliRunner, on a dataset built here and a model trained here."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zreward.cli import main


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A dataset unlike ShapeWorld: flat-colour images whose score is their brightness, 3 raters."""
    root = tmp_path_factory.mktemp("toy")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        b = rng.random()
        Image.fromarray(np.full((40, 56, 3), int(b * 255), np.uint8)).save(root / "images" / f"{i}.png")
        s = 1 + round(b * 8) / 2
        rows.append({"id": str(i), "prompt": f"a grey card number {i // 4}", "image": f"images/{i}.png",
                     "scores": {"fidelity": [s, s, s], "aesthetics": [s]}})
    (root / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "saved" in r.output
    return out


def test_train_writes_loadable_model(trained):
    assert (trained / "zreward.json").is_file() and (trained / "model.safetensors").is_file()
    log = json.loads((trained / "training_log.json").read_text())
    assert log["steps"] > 0 and np.isfinite(log["train_loss"])
    # The default budget (15 minutes) gives a fresh model a vision warm-up, which stops after --epochs
    # passes over the 48 images (2 x 48 / 32 images per step) instead of filling 30% of the budget.
    assert 1 <= log["vision_warmup"]["steps"] <= 3 and log["vision_warmup"]["minutes"] < 1


def test_score_json(trained, toy):
    imgs = [str(toy / "images" / "0.png"), str(toy / "images" / "1.png")]
    r = CliRunner().invoke(main, ["score", "--model", str(trained), "--prompt", "a grey card", "--json", *imgs])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [row["image"] for row in rows] == imgs
    for row in rows:
        assert row["prompt"] == "a grey card"
        assert set(row["overall"]) == {"mean", "std"}
        assert set(row["dimensions"]) == {"alignment", "fidelity", "aesthetics", "plausibility"}
        for d in row["dimensions"].values():
            assert len(d["probs"]) == 9 and abs(sum(d["probs"]) - 1) < 1e-5
            assert 1.0 <= d["mean"] <= 5.0 and d["std"] >= 0


def test_score_table(trained, toy):
    r = CliRunner().invoke(main, ["score", "-m", str(trained), "-p", "a grey card", str(toy / "images" / "0.png")])
    assert r.exit_code == 0, r.output
    assert "overall" in r.output and "fidelity" in r.output and "±" in r.output
    lines = r.output.rstrip("\n").splitlines()
    assert len({len(line) for line in lines}) == 1, lines  # every value right-aligned under its header


def test_eval_json(trained, toy, tmp_path):
    r = CliRunner().invoke(main, ["eval", "--model", str(trained), "--data", str(toy), "--json", "--out", str(tmp_path / "rep"),
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))  # strict: no NaN
    assert res["dimensions"]["alignment"]["plcc"] is None  # no alignment scores in this dataset
    for key in ("hpa", "margin_hpa", "n_pairs", "plcc"):
        assert key in res
    assert res["n_pairs"] > 0
    assert set(res["dimensions"]) >= {"fidelity", "aesthetics"}
    assert (tmp_path / "rep" / "metrics.json").is_file() and (tmp_path / "rep" / "reliability.png").is_file()
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "rep" / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~mask  # as open() makes it, not 0600
    (tmp_path / "a_file").write_text("x")
    r = CliRunner().invoke(main, ["eval", "--model", str(trained), "--data", str(toy), "--out", str(tmp_path / "a_file")])
    assert r.exit_code == 1 and "--out is a file" in r.output and len(r.output.strip().splitlines()) == 1, r.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["score", "-p", "a cat", "missing.png"], "missing.png"),
        (["score", "-p", "  ", "x.png"], "empty"),
        (["eval", "--data", "/nonexistent/dir"], "/nonexistent/dir"),
        (["train", "sft", "--data", "/nonexistent/dir", "--out", "x"], "/nonexistent/dir"),
        (["score", "-p", "a cat", "--device", "gpu0", "x.png"], "gpu0"),
        (["eval", "--engine", "some-engine", "--device", "cpu", "--data", "."], "--device"),
        (["score", "-p", "a cat", "--engine", "", "x.png"], "--engine: empty path"),
        (["score", "-p", "a cat"], "Missing argument 'IMAGES...'"),  # click's usage errors: one line too
        (["train", "sft", "--data", ".", "--out", "x", "--lr", "-1"], "'--lr': -1.0 is not in the range x>0"),
        (["train", "sft", "--data", ".", "--out", "x", "--pair-loss-weight", "-1"], "--pair-loss-weight"),
    ],
)
def test_errors_are_one_line(args, needle, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if args[0] == "score":
        args = [args[0], "--model", str(trained), *args[1:]]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert needle in r.output
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_bad_image_among_several_batches_is_one_line(trained, tmp_path):
    """No progress bar off a terminal: the error is the only line, and it names the file."""
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "tiny.png")
    (tmp_path / "folder.png").mkdir()
    for bad, needle in (("tiny.png", "tiny.png: 4x4 is too small"), ("folder.png", "folder.png: is a directory")):
        r = CliRunner().invoke(main, ["score", "--model", str(trained), "-p", "a cat", "--batch-size", "1",
                                      str(tmp_path / "good.png"), str(tmp_path / "good.png"), str(tmp_path / bad)])
        assert r.exit_code == 1 and needle in r.output and len(r.output.strip().splitlines()) == 1, r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where torch sees no CUDA device")
def test_cuda_device_without_cuda_is_one_line_error(trained, toy):
    r = CliRunner().invoke(main, ["score", "-m", str(trained), "-p", "a card", "--device", "cuda", str(toy / "images" / "0.png")])
    assert r.exit_code != 0 and "no CUDA device" in r.output and len(r.output.strip().splitlines()) == 1


def test_malformed_jsonl_names_file_and_line(trained, tmp_path):
    (tmp_path / "points.jsonl").write_text('{"prompt": "a", "image": "x.png", "scores": {}}\n{not json\n')
    r = CliRunner().invoke(main, ["eval", "--model", str(trained), "--data", str(tmp_path)])
    assert r.exit_code != 0 and "points.jsonl:" in r.output and "Traceback" not in r.output


def test_env_reports_backends():
    r = CliRunner().invoke(main, ["env", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["versions"]["torch"] and rep["score_head"]["reference"]["live"]
    assert set(rep["engines"]) == {"onnxruntime", "aoti", "tensorrt"}


def test_lora_fine_tune_from_checkpoint(trained, toy, tmp_path):
    out = tmp_path / "lora"
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--init", str(trained),
                                  "--lora-r", "4", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    from safetensors.torch import load_file

    before, after = load_file(trained / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(before) == set(after)  # adapters were merged: a plain checkpoint, same tensors
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_widen_then_fine_tune(trained, toy, tmp_path):
    out = tmp_path / "wide"
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--init", str(trained),
                                  "--widen", "2", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    narrow, wide = json.loads((trained / "config.json").read_text()), json.loads((out / "config.json").read_text())
    assert wide["text_config"]["hidden_size"] == 2 * narrow["text_config"]["hidden_size"]
    assert wide["vision_config"]["embed_dim"] == 2 * narrow["vision_config"]["embed_dim"]
    r = CliRunner().invoke(main, ["score", "-m", str(out), "-p", "a grey card", "--json", str(toy / "images" / "0.png")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(tmp_path / "x"), "--widen", "2"])
    assert r.exit_code != 0 and "--init" in r.output and len(r.output.strip().splitlines()) == 1


def test_max_minutes_fits_the_schedule(toy, tmp_path):
    import time

    out = tmp_path / "budget"
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--epochs", "1000",
                                  "--max-minutes", "0.15"])
    wall = time.monotonic() - t0
    assert r.exit_code == 0, r.output
    assert wall < 0.15 * 60 + 5, wall  # the whole command keeps to the budget (5 s for loading the data)
    log = json.loads((out / "training_log.json").read_text())
    assert 0 < log["steps"] < 1000 * 2  # 1000 epochs of 2 steps would never fit in 9 seconds
    assert log["vision_warmup"]["steps"] > 0  # a fresh model warms its vision tower up inside the budget
    assert log["vision_warmup"]["minutes"] + log["minutes"] < 0.15 * 1.5
    assert log["minutes"] < 0.5


def test_embedded_default_model_scores_and_demo_runs(toy):
    img = str(toy / "images" / "3.png")
    r = CliRunner().invoke(main, ["score", "--prompt", "a grey card", "--json", img])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)[0]
    assert row["image"] == img and len(row["dimensions"]["alignment"]["probs"]) == 9
    r = CliRunner().invoke(main, ["demo", "--n", "120", "--seed", "7"])
    assert r.exit_code == 0, r.output
    assert "HPA" in r.output and "noise ceiling" in r.output and "P(image 0 > image 1)" in r.output


def test_data_shapeworld_command(tmp_path):
    out = tmp_path / "sw"
    r = CliRunner().invoke(main, ["data", "shapeworld", "--out", str(out), "--n", "48", "--seed", "3"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert set(summary["splits"]) == {"train", "val", "test", "ood"}
    for split in ("train", "val", "test", "ood"):
        assert (out / split / "points.jsonl").is_file() and (out / split / "pairs.jsonl").is_file()


def test_data_import_command(tmp_path):
    src = tmp_path / "irdb"
    (src / "images").mkdir(parents=True)
    rows = []
    for k, (a, f, rank) in enumerate([(7, 6, 1), (3, 5, 2), (1, 2, 3)]):
        Image.fromarray(np.full((16, 16, 3), 40 * k, np.uint8)).save(src / "images" / f"{k}.png")
        rows.append({"prompt_id": "p0", "prompt": "a cat", "image_path": f"images/{k}.png", "rank": rank,
                     "image_text_alignment_rating": a, "fidelity_rating": f, "overall_rating": 8 - rank})
    (src / "test.json").write_text(json.dumps(rows))
    r = CliRunner().invoke(main, ["data", "import", "imagerewarddb", str(src / "test.json"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    from zreward.data import load_dataset

    ds = load_dataset(tmp_path / "out")
    assert len(ds.points) == 3 and ds.points[0].scores == {"alignment": [5.0], "fidelity": [4.5]}
    assert sorted(q.preference for q in ds.pairs) == ["a", "a", "a"]
    assert "wrote" in r.output and "3 points, 3 pairs, 3 images" in r.output

    # The options reach the importer: a missing image is skipped and counted, OUT replaced.
    rows[2]["image_path"] = "images/absent.png"
    (src / "test.json").write_text(json.dumps(rows))
    args = ["data", "import", "imagerewarddb", str(src / "test.json"), "--out", str(tmp_path / "out")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and "already exists" in r.output and "--overwrite" in r.output
    r = CliRunner().invoke(main, [*args, "--overwrite"])
    assert r.exit_code != 0 and "images/absent.png' not found" in r.output and "--skip-missing" in r.output
    r = CliRunner().invoke(main, [*args, "--overwrite", "--skip-missing"])
    assert r.exit_code == 0 and "2 points, 1 pairs" in r.output and "1 image not found" in r.output, r.output
    r = CliRunner().invoke(main, ["data", "import", "pickapic", str(src), "--out", str(tmp_path / "p"), "--no-copy"])
    assert r.exit_code != 0 and "--no-copy does not apply to pickapic" in r.output


def test_caption_loss_trains(toy, tmp_path):
    out = tmp_path / "cap"
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--epochs", "1",
                                  "--caption-loss-weight", "0.5"])
    assert r.exit_code == 0, r.output
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] > 0 and np.isfinite(log["train_loss"])


def test_architecture_and_batch_flags(toy, tmp_path):
    out = tmp_path / "small"
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--epochs", "1",
                                  "--hidden-size", "64", "--num-layers", "2", "--vision-hidden-size", "32",
                                  "--vision-depth", "2", "--groups-per-batch", "3", "--workers", "1"])
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 64 and config["text_config"]["num_hidden_layers"] == 2
    assert config["vision_config"]["embed_dim"] == 32 and config["vision_config"]["depth"] == 2
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] == -(-log["n_groups"] // 3)  # one epoch of 3-group batches


def test_new_resolution_and_explanation_flags(trained, toy, tmp_path):
    out = tmp_path / "hires"
    size = json.loads((trained / "zreward.json").read_text())["image_size"]
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(out), "--init", str(trained),
                                  "--image-size", str(2 * size), "--epochs", "1", "--explanation-loss-weight", "0.5",
                                  "--explanation-tokens", "8"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "zreward.json").read_text())["image_size"] == 2 * size
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(toy), "--out", str(tmp_path / "bad"), "--init",
                                  str(trained), "--image-size", str(size + 14), "--epochs", "1"])
    assert r.exit_code != 0 and "multiple of" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "bad").exists()


def test_a_dataset_on_its_own_rubric_trains_scores_and_evaluates(tmp_path):
    """rubric.json in the dataset sets the scale of a fresh model: two other dimensions on a 5-level
    scale; the trained model scores and evaluates on it, and starting from the embedded default (whose
    rubric differs) is a one-line error."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(16):
        Image.fromarray(np.full((32, 32, 3), 16 * i, np.uint8)).save(root / "images" / f"{i}.png")
        rows.append({"prompt": f"a tile {i // 4}", "image": f"images/{i}.png",
                     "scores": {"quality": [1.0 + i // 4, 1.0 + (i + 1) // 4], "safety": [5.0]}})
    (root / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "rubric.json").write_text('{"dimensions": ["quality", "safety"], "values": [1, 2, 3, 4, 5]}')
    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(root), "--out", str(out), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["score", "-m", str(out), "-p", "a tile", "--json", str(root / "images" / "3.png")])
    assert r.exit_code == 0, r.output
    dims = json.loads(r.output)[0]["dimensions"]
    assert list(dims) == ["quality", "safety"] and all(len(d["probs"]) == 5 for d in dims.values())
    r = CliRunner().invoke(main, ["eval", "-m", str(out), "--data", str(root), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)["dimensions"]) == {"quality", "safety"}
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(root), "--out", str(tmp_path / "x"), "--init", "default"])
    assert r.exit_code != 0 and "rubric" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x").exists()


def test_training_on_pairs_only_says_why(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "x", "image_a": "a.png", "image_b": "b.png", "preference": "a"}\n')
    r = CliRunner().invoke(main, ["train", "sft", "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert r.exit_code != 0 and "only pairs.jsonl" in r.output and len(r.output.strip().splitlines()) == 1


def test_sigterm_removes_the_unfinished_output(tmp_path):
    """A scheduler's SIGTERM unwinds like Ctrl-C: no hidden .partial folder is left beside OUT."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-c", "from zreward.cli import main; main()", "data", "shapeworld",
           "--out", str(tmp_path / "world"), "--n", "20000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".world.*.partial")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(tmp_path.glob(".world.*.partial")), "the generator never started writing"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert list(tmp_path.iterdir()) == []
