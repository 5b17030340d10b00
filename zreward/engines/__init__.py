"""Compiled student engines (ONNX Runtime, AOTInductor, TensorRT) that score like the PyTorch model.

    from zreward.engines import export_engine, load_engine
    export_engine(model, "engine-dir", backend="onnxruntime")
    engine = load_engine("engine-dir")
    engine.score(images, prompts, batch_size=32)  # -> ScoreDistribution

Heavy imports (onnx, onnxruntime, tensorrt, inductor) happen inside the functions.
"""

from __future__ import annotations

BACKENDS = ("onnxruntime", "aoti", "tensorrt")

__all__ = ["BACKENDS", "engine_backends", "export_engine", "load_engine"]


def load_engine(path, providers=None, device=None, verify_hashes: bool = True, threads=None):
    """Validates and loads an engine directory; see zreward.engines.artifact.load_engine."""
    from zreward.engines.artifact import load_engine as _load

    return _load(path, providers=providers, device=device, verify_hashes=verify_hashes, threads=threads)


def export_engine(model, out, options=None, source=None, log=None, **overrides) -> dict:
    """Exports a ZRewardModel to a verified engine directory; see zreward.engines.exporter."""
    from zreward.engines.exporter import export_engine as _export

    return _export(model, out, options, source=source, log=log, **overrides)


def engine_backends() -> dict:
    """{backend: "available" | the reason it is not} for `zreward env`."""
    from zreward.engines.artifact import backend_unavailable

    return {b: backend_unavailable(b) or "available" for b in BACKENDS}
