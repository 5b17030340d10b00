"""`zreward export --backend onnxruntime` end to end: CLI, artifact, load_engine, parity, bad input."""

import json
import os
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from engine_helpers import copy_engine, pytorch_probs, sample

import zreward
from zreward import InputError
from zreward.engines import load_engine
from zreward.engines.artifact import FORMAT_VERSION, MANIFEST, sha256_file
from zreward.engines.cli import export_command
from zreward.models import build_tiny_model, load_model
from zreward.testing import BATCH_INVARIANCE_ATOL, ENGINE_PROBS_ATOL


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    build_tiny_model("qwen2_vl").save_pretrained(root / "model")
    # The profile gives the backend and batch range; --max-batch overrides its maximum.
    result = CliRunner().invoke(export_command, ["--model", str(root / "model"), "--profile", "cpu-onnxruntime",
                                                 "--out", str(root / "engine"), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    return load_model(root / "model"), root / "engine", result.output


def test_cli_reports_progress_and_parity(exported):
    _, _, output = exported
    assert output.startswith("profile cpu-onnxruntime: ")
    assert "static graph vs Hugging Face" in output and "engine vs PyTorch" in output
    assert "max |probs difference|" in output.splitlines()[-1]


def test_manifest_records_what_the_engine_is(exported):
    model, engine_dir, _ = exported
    m = json.loads((engine_dir / MANIFEST).read_text())
    assert m["format_version"] == FORMAT_VERSION and m["backend"] == "onnxruntime" and m["precision"] == "fp32"
    assert m["resolution"] == model.image_size and m["batch"] == {"min": 1, "opt": 4, "max": 4}
    assert m["rubric"] == model.rubric.to_dict() and m["source"]["model_type"] == "qwen2_vl"
    assert len(m["source"]["weights_sha256"]) == 64
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(m["versions"])
    assert m["parity"]["max_abs_probs"] <= ENGINE_PROBS_ATOL
    assert m["parity"]["batch_invariance"] <= BATCH_INVARIANCE_ATOL
    for rel, meta in m["files"].items():
        assert sha256_file(engine_dir / rel) == meta["sha256"]
    assert "model.onnx" in m["files"] and "tokenizer/tokenizer.json" in m["files"]


def test_engine_scores_like_pytorch(exported):
    model, engine_dir, _ = exported
    engine = zreward.load_engine(engine_dir)
    assert engine.rubric == model.rubric
    images, prompts = sample(4, 4, seed=7)
    dist = engine.score(images, prompts, batch_size=100)  # above the engine's max batch: split
    ref = pytorch_probs(model, images, prompts)
    assert dist.probs.shape == ref.shape
    assert (dist.probs - ref).abs().max() <= ENGINE_PROBS_ATOL
    probs, mean, std = engine.run(engine.host(images[:3], prompts[:3]))
    assert (mean - dist.mean[:3]).abs().max() <= 1e-5 and (std - dist.std[:3]).abs().max() <= 1e-5


def test_scores_do_not_depend_on_the_batch(exported):
    _, engine_dir, _ = exported
    engine = load_engine(engine_dir, verify_hashes=False)
    images, prompts = sample(2, 2, seed=3)
    together = engine.score(images, prompts, batch_size=4).probs
    alone = torch.cat([engine.score(images[i:i + 1], prompts[i:i + 1]).probs for i in range(4)])
    assert (together - alone).abs().max() <= BATCH_INVARIANCE_ATOL


def test_engine_is_thread_safe(exported):
    _, engine_dir, _ = exported
    engine = load_engine(engine_dir, verify_hashes=False)
    images, prompts = sample(2, 2, seed=5)
    expected = engine.score(images, prompts).probs
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = engine.score(images, prompts, batch_size=1 + i % 3).probs
        except Exception as e:  # collected: an exception in a thread would otherwise vanish
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert (r - expected).abs().max() <= BATCH_INVARIANCE_ATOL


def _edit_manifest(engine_dir: Path, **changes):
    path = engine_dir / MANIFEST
    m = json.loads(path.read_text())
    for key, value in changes.items():
        target = m
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    path.write_text(json.dumps(m))


def test_other_format_version_is_rejected(exported, tmp_path):
    d = copy_engine(exported[1], tmp_path / "e")
    _edit_manifest(d, format_version=FORMAT_VERSION + 1)
    with pytest.raises(InputError, match=f"format version {FORMAT_VERSION + 1}"):
        load_engine(d)


def test_truncated_graph_is_rejected(exported, tmp_path):
    d = copy_engine(exported[1], tmp_path / "e")
    graph = d / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(InputError, match=r"model\.onnx.*truncated"):
        load_engine(d)


def test_weights_hash_mismatch_is_rejected(exported, tmp_path):
    d = copy_engine(exported[1], tmp_path / "e")
    graph = d / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-100] ^= 0xFF  # same size, one weight byte changed
    graph.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model\.onnx: weights hash mismatch"):
        load_engine(d)


def test_corrupt_manifest_and_missing_manifest(exported, tmp_path):
    d = copy_engine(exported[1], tmp_path / "e")
    (d / MANIFEST).write_text('{"format": "zreward-engine", ')
    with pytest.raises(InputError, match="manifest.json: malformed"):
        load_engine(d)
    (d / MANIFEST).unlink()
    with pytest.raises(InputError, match="not an engine directory"):
        load_engine(d)
    with pytest.raises(InputError, match="not found"):
        load_engine(tmp_path / "nowhere")


def test_backend_not_installed_and_unsupported_backbone(exported, tmp_path):
    d = copy_engine(exported[1], tmp_path / "e")
    _edit_manifest(d, backend="tensorrt")
    with pytest.raises(InputError, match="backend 'tensorrt' is not available here: tensorrt is not installed"):
        load_engine(d)
    _edit_manifest(d, backend="onnxruntime", family__model_type="llava")
    with pytest.raises(InputError, match="unsupported backbone 'llava'"):
        load_engine(d)


def test_interrupted_export_leaves_nothing_that_looks_complete(exported, tmp_path, monkeypatch):
    from zreward.engines import onnx_backend

    model, engine_dir, _ = exported
    out = copy_engine(engine_dir, tmp_path / "engine")
    before = (out / MANIFEST).read_text()

    def interrupted(program, example, path):
        path.write_bytes(b"\x08\x07half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_backend, "export_onnx", interrupted)
    from zreward.engines import export_engine

    with pytest.raises(KeyboardInterrupt):
        export_engine(model, out, backend="onnxruntime", max_batch=2, sample_shapes=1, sample_random=1)
    with pytest.raises(KeyboardInterrupt):
        export_engine(model, tmp_path / "fresh", backend="onnxruntime", max_batch=2, sample_shapes=1, sample_random=1)
    assert (out / MANIFEST).read_text() == before  # the old engine is untouched
    assert not (tmp_path / "fresh").exists()
    assert sorted(os.listdir(tmp_path)) == ["engine"]  # no temporary directory left behind


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(export_command, ["--out", str(tmp_path / "x"), "--profile", "no-such-profile"])
    assert r.exit_code == 1 and "unknown export profile 'no-such-profile'" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(export_command, ["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("damage,message", [
    (lambda m: m.pop("rubric"), "missing 'rubric'"),
    (lambda m: m.pop("graph"), "missing 'graph'"),
    (lambda m: m["text"].pop("positions"), "missing 'text.positions'"),
    (lambda m: m.update(resolution="abc"), "'resolution' has type str"),
    (lambda m: next(iter(m["files"].values())).pop("bytes"), "needs bytes and sha256"),
    (lambda m: m["template"].update(no_such_field=1), "damaged manifest \\(TypeError"),
])
def test_damaged_manifest_keys_are_named(exported, tmp_path, damage, message):
    d = copy_engine(exported[1], tmp_path / "e")
    m = json.loads((d / MANIFEST).read_text())
    damage(m)
    (d / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(InputError, match=message):
        load_engine(d)


def test_export_refuses_outputs_it_would_destroy(exported, tmp_path):
    """Only an earlier engine is replaced; a file, a folder of other things, the source model or a path
    under a file are refused before the model loads."""
    model_dir = exported[1].parent / "model"
    (tmp_path / "a_file").write_text("keep")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("keep")
    runner = CliRunner()
    for out, needle in ((tmp_path / "a_file", "exists and is a file"), (tmp_path / "notes", "is not an engine"),
                        (model_dir, "would replace its own input"), (tmp_path / "a_file" / "e", "is a file, not a folder")):
        r = runner.invoke(export_command, ["--model", str(model_dir), "--out", str(out), "--max-batch", "2"])
        assert r.exit_code == 1 and needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert (tmp_path / "a_file").read_text() == "keep" and (tmp_path / "notes" / "keep.txt").is_file()
    assert (model_dir / "zreward.json").is_file()
    for profile, needle in (({"batch": {"min": "a"}}, "batch min must be a whole number"),
                            ({"providers": "CPUExecutionProvider"}, "providers must be a list"),
                            ({"device": "tpu"}, "unknown export device 'tpu'"),
                            *([({"device": "cuda"}, "torch sees no CUDA device here")] if not torch.cuda.is_available() else [])):
        (tmp_path / "p.json").write_text(json.dumps({"backend": "onnxruntime", **profile}))
        r = runner.invoke(export_command, ["--profile", str(tmp_path / "p.json"), "--out", str(tmp_path / "x")])
        assert r.exit_code == 1 and needle in r.output and "Traceback" not in r.output, r.output
    with pytest.raises(InputError, match="engines run on cpu or cuda"):
        load_engine(exported[1], device="tpu")


def test_engine_checks_batch_size_like_the_model(exported):
    engine = load_engine(exported[1])
    images, prompts = sample(1, 1)
    for bad in (2.5, True, "4", None):
        with pytest.raises(InputError, match="batch_size must be a positive integer"):
            engine.score(images, prompts, batch_size=bad)
