"""ONNX Runtime backend: the static graph as ONNX, run by one InferenceSession.

Weights go to an external-data file when they pass protobuf's 2 GiB limit. The CPU execution
provider always works; CUDA and TensorRT execution providers are used where the installed
onnxruntime build has them. An InferenceSession's `run` is thread-safe, so one session is shared
by every thread.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from zreward.engines.static import INPUT_NAMES, OUTPUT_NAMES
from zreward.errors import InputError

GRAPH_FILE = "model.onnx"
# protobuf cannot serialize a message past 2 GiB; keep headroom for the graph itself.
EXTERNAL_DATA_BYTES = 2**31 - 2**27
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def unavailable_reason() -> str | None:
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            return f"{name} is not installed (pip install 'zreward[export]')"
    return None


def weight_bytes(program) -> int:
    tensors = list(program.state_dict.values()) + list(program.constants.values())
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def export_onnx(program, example: dict, path: Path) -> None:
    """Writes the exported program as ONNX at `path` (+ `path`.data when the weights are large)."""
    external = weight_bytes(program) > EXTERNAL_DATA_BYTES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # axis-renaming and deprecation chatter of the exporter
        torch.onnx.export(
            program, (), str(path), kwargs={k: example[k] for k in INPUT_NAMES}, input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES), dynamo=True, external_data=external, optimize=False, verbose=False,
        )


def resolve_providers(requested=None) -> list[str]:
    """The execution providers to use: `requested` (each must be installed) or the best available."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise InputError(f"onnxruntime execution provider(s) {missing} are not installed; available: {available}")
        return list(requested)
    return [p for p in DEFAULT_PROVIDERS if p in available]


class OnnxRunner:
    """inputs (dict of INPUT_NAMES tensors) -> (probs, score_mean, score_std) CPU float32 tensors."""

    def __init__(self, path: Path, providers=None, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.providers = resolve_providers(providers)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: onnxruntime cannot load the graph ({first})") from None

    def __call__(self, inputs: dict) -> tuple[torch.Tensor, ...]:
        feeds = {k: inputs[k].detach().cpu().numpy() for k in INPUT_NAMES}
        outs = self.session.run(list(OUTPUT_NAMES), feeds)
        return tuple(torch.from_numpy(o).float() for o in outs)
