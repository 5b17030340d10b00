"""The Triton Python-backend model of a zreward model repository: host preprocessing.

`Preprocessor` is the whole logic (plain numpy / torch, testable without the server);
`TritonPythonModel` adapts it to the Python backend's request / response objects.
Inputs per row: IMAGE (H, W, 3) uint8 and PROMPT (1,) bytes; outputs: the scorer graph's inputs,
text padded to the engine's fixed length so the scorer's dynamic batcher can stack rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from zreward.errors import InputError


class Preprocessor:
    """engine dir (host.json + tokenizer/) -> callable(images (B, H, W, 3) uint8, prompts (B, 1)) -> dict."""

    def __init__(self, engine_dir: str | Path):
        from zreward.engines.artifact import make_host

        engine_dir = Path(engine_dir)
        host_file = engine_dir / "host.json"
        try:
            manifest = json.loads(host_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{host_file}: cannot read the engine's host description ({e})") from None
        self.host = make_host(engine_dir, manifest)
        self.host.fixed_length = True

    def __call__(self, images: np.ndarray, prompts: np.ndarray) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InputError(f"IMAGE: expected (batch, H, W, 3) uint8, got {images.shape} {images.dtype}")
        texts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in np.asarray(prompts).reshape(-1)]
        if len(texts) != images.shape[0]:
            raise InputError(f"PROMPT: {len(texts)} prompts for {images.shape[0]} images")
        tensors = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 255 for im in images]
        return self.host(tensors, texts)


class TritonPythonModel:
    """Triton's Python-backend entry point (loaded from the repository's zreward_preprocess/1/model.py)."""

    def initialize(self, args):
        self.pre = Preprocessor(Path(args["model_repository"]) / args["model_version"] / "engine")

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils  # only importable inside Triton's Python backend

        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
                prompts = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy()
                out = self.pre(images, prompts)
                tensors = [pb_utils.Tensor(name, t.numpy()) for name, t in out.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except InputError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
        return responses
