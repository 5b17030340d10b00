"""Every supported backbone exports to ONNX and passes parity (Qwen3.5's unrolled recurrence is slow)."""

import pytest
from engine_helpers import pytorch_probs, sample
from markers import slow

from zreward.engines import export_engine, load_engine
from zreward.models import build_tiny_model
from zreward.testing import BATCH_INVARIANCE_ATOL, ENGINE_PROBS_ATOL


def _check(family, tmp_path, **config):
    model = build_tiny_model(family, **config)
    manifest = export_engine(model, tmp_path / "e", backend="onnxruntime", max_batch=4, sample_shapes=2,
                             sample_random=2)
    assert manifest["source"]["model_type"] == family
    assert manifest["parity"]["max_abs_probs"] <= ENGINE_PROBS_ATOL
    assert manifest["parity"]["batch_invariance"] <= BATCH_INVARIANCE_ATOL
    images, prompts = sample(2, 2, model.image_size, seed=9)
    probs = load_engine(tmp_path / "e").score(images, prompts).probs
    assert (probs - pytorch_probs(model, images, prompts)).abs().max() <= ENGINE_PROBS_ATOL
    return manifest


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_family_exports_with_parity(family, tmp_path, monkeypatch):
    from zreward.engines import onnx_backend

    if family == "qwen3_vl":  # weights go to external data past 2 GB: exercise that path at tiny size
        monkeypatch.setattr(onnx_backend, "EXTERNAL_DATA_BYTES", 0)
    manifest = _check(family, tmp_path, layers=2, vision_depth=2)
    assert not manifest["text"]["fixed_length"]
    external = "model.onnx.data" in manifest["files"]
    assert external == (family == "qwen3_vl")
    assert external == ("model.onnx.data" in manifest["graph"]["weights"])


@slow
def test_qwen3_5_exports_with_parity(tmp_path):
    # 4 layers: three linear-attention (gated delta net) layers and one full-attention layer.
    manifest = _check("qwen3_5", tmp_path, layers=4, vision_depth=2)
    assert manifest["text"]["fixed_length"]
