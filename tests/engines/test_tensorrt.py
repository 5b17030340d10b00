"""TensorRT: what runs without a GPU (profile assembly, guards, errors). Builds and runs need a GPU
with TensorRT 11 installed and are exercised by no test here."""

import importlib.util

import pytest

from zreward import InputError
from zreward.engines import export_engine
from zreward.engines.exporter import ExportOptions
from zreward.engines.static import INPUT_NAMES
from zreward.engines.tensorrt_backend import profile_shapes, unavailable_reason
from zreward.models import build_tiny_model

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_profile_covers_every_input_with_min_opt_max():
    shapes = profile_shapes(patches=64, features=1176, dims=4, batch=(1, 8, 32), length=(40, 170, 170))
    assert set(shapes) == set(INPUT_NAMES)
    assert shapes["pixel_values"] == ((1, 64, 1176), (8, 64, 1176), (32, 64, 1176))
    assert shapes["input_ids"] == ((1, 40), (8, 170), (32, 170)) == shapes["attention_mask"]
    assert shapes["position_ids"] == ((1, 3, 40), (8, 3, 170), (32, 3, 170))
    assert shapes["read_positions"] == ((1, 4), (8, 4), (32, 4))


@pytest.mark.parametrize("batch,length", [((2, 1, 4), (5, 5, 5)), ((1, 1, 1), (0, 1, 1)), ((1, 4, 2), (5, 5, 5))])
def test_profile_rejects_unordered_ranges(batch, length):
    with pytest.raises(InputError, match="min <= opt <= max"):
        profile_shapes(64, 1176, 4, batch, length)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_is_a_clear_error_and_nothing_is_written(tmp_path):
    assert "tensorrt is not installed" in unavailable_reason()
    model = build_tiny_model("qwen2_vl", layers=1, vision_depth=1)
    with pytest.raises(InputError, match="backend 'tensorrt' is not available: tensorrt is not installed"):
        export_engine(model, tmp_path / "e", backend="tensorrt")
    assert not (tmp_path / "e").exists()


def test_export_options_are_checked_before_any_work():
    with pytest.raises(InputError, match="unknown backend 'tvm'"):
        ExportOptions(backend="tvm").checked()
    with pytest.raises(InputError, match="unknown precision 'int4'"):
        ExportOptions(precision="int4").checked()
    with pytest.raises(InputError, match="min <= opt <= max"):
        ExportOptions(min_batch=8, max_batch=4).checked()
    with pytest.raises(InputError, match="not aoti"):
        ExportOptions(backend="aoti", format="triton").checked()
    assert ExportOptions(max_batch=4).checked().opt_batch == 4
