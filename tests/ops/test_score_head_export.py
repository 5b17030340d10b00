"""Export of a module using the score head: torch.export keeps the fused op (fake registration) and
lowers it with `decompositions()`; ONNX export traces standard ops that ONNX Runtime runs as they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from score_head_cases import make_inputs

from zreward.ops import ScoreHead, decompositions, score_head_reference
from zreward.testing import assert_close, has_ext

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _head(norm=True, temperature=1.0, h=48):
    hidden, weight, values, nw = make_inputs(6, h, 9, norm=norm)
    return ScoreHead(weight, values, norm_weight=nw, temperature=temperature).eval(), hidden


def _dynamic():
    return {"hidden": {0: torch.export.Dim("n", min=1, max=4096)}}


def test_torch_export_keeps_the_fused_op_and_runs_it():
    head, hidden = _head()
    ep = torch.export.export(head, (hidden,), dynamic_shapes=_dynamic())
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    if has_ext("cpu"):
        assert "zreward.score_head_fwd.default" in targets
    other = torch.randn(11, 48)
    for got, want in zip(ep.module()(other), score_head_reference(other, head.weight, head.values,
                                                                  norm_weight=head.norm_weight)):
        assert_close(got.detach(), want.detach())


def test_decompositions_lower_to_standard_ops():
    head, hidden = _head()
    ep = torch.export.export(head, (hidden,), dynamic_shapes=_dynamic()).run_decompositions(decompositions())
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if t.startswith("zreward.")], targets
    assert "aten.softmax.int" in targets
    other = torch.randn(5, 48)
    for got, want in zip(ep.module()(other), head(other)):
        assert_close(got.detach(), want.detach())


@pytest.mark.parametrize("norm, temperature", [(True, 1.0), (False, 0.7)])
def test_onnx_export_runs_in_onnx_runtime(tmp_path, norm, temperature):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    head, hidden = _head(norm=norm, temperature=temperature)
    program = torch.onnx.export(head, (hidden,), dynamo=True, dynamic_shapes=_dynamic(), verbose=False)
    domains = {node.domain for node in program.model_proto.graph.node}
    assert domains <= {"", "ai.onnx"}, domains  # standard ops only: no plugin needed downstream
    path = tmp_path / "score_head.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = torch.randn(13, 48)
    got = session.run(None, {session.get_inputs()[0].name: other.numpy()})
    want = score_head_reference(other, head.weight, head.values, norm_weight=head.norm_weight,
                                temperature=temperature)
    assert [g.shape for g in got] == [(13, 9), (13,), (13,)]
    for g, w in zip(got, want):
        assert_close(torch.from_numpy(np.asarray(g)), w.detach())
