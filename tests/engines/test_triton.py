"""`--format triton`: a Triton Inference Server model repository, checked without the server."""

import numpy as np
import onnx
import pytest
import torch
from engine_helpers import pytorch_probs, sample

from zreward import InputError
from zreward.engines import export_engine, load_engine
from zreward.engines.triton_preprocess import Preprocessor
from zreward.engines.triton_server import ENSEMBLE, PREPROCESS, SCORER, parse_config, to_pbtxt
from zreward.models import build_tiny_model
from zreward.testing import ENGINE_PROBS_ATOL

ONNX_TYPES = {onnx.TensorProto.FLOAT: 11, onnx.TensorProto.INT64: 9}  # -> inference.DataType numbers


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    model = build_tiny_model("qwen2_vl", layers=2, vision_depth=2)
    out = tmp_path_factory.mktemp("triton") / "repo"
    triton = {"instances": 3, "preferred_batch_sizes": [2, 4], "max_queue_delay_us": 250}
    manifest = export_engine(model, out, backend="onnxruntime", max_batch=4, format="triton", sample_shapes=2,
                             sample_random=2, triton=triton)
    configs = {n: parse_config((out / n / "config.pbtxt").read_text(), n) for n in (ENSEMBLE, PREPROCESS, SCORER)}
    return model, out, manifest, configs


def test_repository_layout(repo):
    _, out, manifest, _ = repo
    assert manifest["layout"] == "triton"
    for rel in ("manifest.json", f"{SCORER}/1/model.onnx", f"{PREPROCESS}/1/model.py",
                f"{PREPROCESS}/1/engine/host.json", f"{PREPROCESS}/1/engine/tokenizer/tokenizer.json"):
        assert (out / rel).is_file(), rel
    assert (out / ENSEMBLE / "1").is_dir()
    assert "TritonPythonModel" in (out / PREPROCESS / "1" / "model.py").read_text()


def test_scorer_config_matches_the_graph(repo):
    _, out, manifest, configs = repo
    cfg = configs[SCORER]
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 4
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert cfg.instance_group[0].count == 3 and cfg.instance_group[0].kind == 2  # KIND_CPU
    graph = onnx.load(str(out / SCORER / "1" / "model.onnx"), load_external_data=False).graph
    n = manifest["text"]["max_length"]
    for declared, actual in ((cfg.input, graph.input), (cfg.output, graph.output)):
        assert [t.name for t in declared] == [t.name for t in actual]
        for d, a in zip(declared, actual):
            assert d.data_type == ONNX_TYPES[a.type.tensor_type.elem_type]
            dims = a.type.tensor_type.shape.dim
            assert dims[0].dim_param and not dims[0].dim_value  # dynamic: the batch dimension Triton adds
            assert len(dims) == len(d.dims) + 1
            for want, got in zip(d.dims, dims[1:]):
                assert got.dim_value == want or (got.dim_param and want == n)  # the text length, fixed by Triton


def test_ensemble_wires_preprocess_into_scorer(repo):
    _, _, _, configs = repo
    ens, pre, scorer = configs[ENSEMBLE], configs[PREPROCESS], configs[SCORER]
    assert ens.platform == "ensemble" and pre.backend == "python"
    first, second = ens.ensemble_scheduling.step
    assert (first.model_name, second.model_name) == (PREPROCESS, SCORER)
    assert set(first.input_map.values()) == {t.name for t in ens.input}
    assert set(first.input_map) == {t.name for t in pre.input}
    assert set(first.output_map) == {t.name for t in pre.output}
    assert dict(second.input_map) == dict(first.output_map) and set(second.input_map) == {t.name for t in scorer.input}
    assert set(second.output_map.values()) == {t.name for t in ens.output}
    assert {t.name: list(t.dims) for t in pre.output} == {t.name: list(t.dims) for t in scorer.input}


def test_preprocess_then_scorer_scores_like_pytorch(repo):
    import onnxruntime as ort

    model, out, _, configs = repo
    pre = Preprocessor(out / PREPROCESS / "1" / "engine")
    session = ort.InferenceSession(str(out / SCORER / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    images, prompts = sample(2, 2, seed=4)
    rows = []
    for img, prompt in zip(images, prompts):  # one request each, as clients send them
        hwc = (img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()[None]
        rows.append(pre(hwc, np.array([[prompt.encode()]], dtype=object)))
    for row in rows:
        for t in configs[SCORER].input:
            assert tuple(row[t.name].shape[1:]) == tuple(t.dims)
    stacked = {k: torch.cat([r[k] for r in rows]).numpy() for k in rows[0]}  # the dynamic batcher's stack
    probs = torch.from_numpy(session.run(["probs"], stacked)[0])
    quantized = [(img * 255).round() / 255 for img in images]  # what a uint8 client sends
    assert (probs - pytorch_probs(model, quantized, prompts)).abs().max() <= ENGINE_PROBS_ATOL


def test_preprocess_rejects_bad_requests(repo):
    pre = Preprocessor(repo[1] / PREPROCESS / "1" / "engine")
    with pytest.raises(InputError, match="IMAGE: expected"):
        pre(np.zeros((1, 8, 8), np.uint8), np.array([[b"x"]], dtype=object))
    with pytest.raises(InputError, match="PROMPT: 2 prompts for 1 images"):
        pre(np.zeros((1, 8, 8, 3), np.uint8), np.array([[b"x"], [b"y"]], dtype=object))


def test_repository_is_not_a_local_engine(repo):
    with pytest.raises(InputError, match="Triton model repository"):
        load_engine(repo[1])


def test_config_parser_rejects_what_triton_would():
    with pytest.raises(InputError, match="no field named \"dynamic_batcher\""):
        parse_config('name: "m"\ndynamic_batcher { }\n')
    with pytest.raises(InputError, match="TYPE_FLOAT"):
        parse_config('input { name: "x" data_type: TYPE_FLOAT dims: 1 }\n')
    text = to_pbtxt({"name": "m", "parameters": {"k": {"string_value": "v"}}})
    assert parse_config(text).parameters["k"].string_value == "v"
