"""AOTInductor engines: one family here (a compile takes ~30 s on 2 cores), the others marked slow."""

import json

import pytest
from engine_helpers import copy_engine, pytorch_probs, sample
from markers import slow

from zreward import InputError
from zreward.engines import export_engine, load_engine
from zreward.engines.artifact import MANIFEST
from zreward.models import build_tiny_model
from zreward.testing import BATCH_INVARIANCE_ATOL, ENGINE_PROBS_ATOL


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_tiny_model("qwen2_vl", layers=2, vision_depth=2)
    out = tmp_path_factory.mktemp("aoti") / "engine"
    manifest = export_engine(model, out, backend="aoti", max_batch=4, sample_shapes=2, sample_random=2)
    return model, out, manifest


def test_aoti_engine_scores_like_pytorch(exported):
    model, out, manifest = exported
    assert manifest["backend"] == "aoti" and manifest["graph"]["file"] == "model.pt2"
    assert manifest["parity"]["max_abs_probs"] <= ENGINE_PROBS_ATOL
    engine = load_engine(out)
    images, prompts = sample(3, 3, seed=11)
    dist = engine.score(images, prompts, batch_size=8)  # split into batches of 4 and 2
    assert (dist.probs - pytorch_probs(model, images, prompts)).abs().max() <= ENGINE_PROBS_ATOL
    alone = engine.score(images[:1], prompts[:1]).probs
    assert (alone - dist.probs[:1]).abs().max() <= BATCH_INVARIANCE_ATOL


def test_aoti_package_from_another_torch_is_rejected(exported, tmp_path):
    d = copy_engine(exported[1], tmp_path / "e")
    m = json.loads((d / MANIFEST).read_text())
    m["versions"]["torch"] = "1.13.0"
    (d / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(InputError, match="compiled with torch 1.13.0"):
        load_engine(d)


@slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def test_aoti_other_families(family, tmp_path):
    model = build_tiny_model(family, layers=4 if family == "qwen3_5" else 2, vision_depth=2)
    manifest = export_engine(model, tmp_path / "e", backend="aoti", max_batch=4, sample_shapes=2, sample_random=2)
    assert manifest["parity"]["max_abs_probs"] <= ENGINE_PROBS_ATOL
    assert manifest["parity"]["batch_invariance"] <= BATCH_INVARIANCE_ATOL
