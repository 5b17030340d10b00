"""TensorRT backend (TensorRT 11 API): a serialized plan built from the exported ONNX graph.

TensorRT 11 networks are strongly typed: the precision is the ONNX graph's own dtypes (export the
graph in fp32, fp16 or bf16; there are no FP16/BF16 builder flags). The build uses one optimization
profile (min / opt / max batch and text length) and a timing cache written beside the plan so a
rebuild on the same GPU skips tactic timing. At run time each thread gets its own execution context
and CUDA stream (the engine is shared): `set_input_shape`, `set_tensor_address`,
`execute_async_v3`.

Needs the `tensorrt` package and a CUDA GPU; neither is imported until a build or a load.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from zreward.engines.static import INPUT_NAMES, OUTPUT_NAMES
from zreward.errors import InputError

PLAN_FILE = "model.plan"
TIMING_CACHE_FILE = "timing.cache"
MIN_MAJOR = 11


def unavailable_reason() -> str | None:
    try:
        import tensorrt as trt
    except ImportError:
        return "tensorrt is not installed (pip install 'zreward[tensorrt]'; it needs a CUDA GPU)"
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_MAJOR:
        return f"tensorrt {trt.__version__} is too old: the engine code uses the TensorRT {MIN_MAJOR} API"
    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU and none is visible"
    return None


def _tensorrt():
    reason = unavailable_reason()
    if reason:
        raise InputError(f"backend 'tensorrt': {reason}")
    import tensorrt as trt

    return trt


def profile_shapes(patches: int, features: int, dims: int, batch: tuple[int, int, int],
                   length: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """{input name: (min shape, opt shape, max shape)} for the one optimization profile.

    batch and length are (min, opt, max); a graph with a static text length has min = opt = max.
    """
    for name, (lo, opt, hi) in (("batch", batch), ("length", length)):
        if not 1 <= lo <= opt <= hi:
            raise InputError(f"tensorrt profile: {name} needs 1 <= min <= opt <= max, got {(lo, opt, hi)}")
    by = {
        "pixel_values": lambda b, n: (b, patches, features),
        "input_ids": lambda b, n: (b, n),
        "attention_mask": lambda b, n: (b, n),
        "position_ids": lambda b, n: (b, 3, n),
        "read_positions": lambda b, n: (b, dims),
    }
    return {k: tuple(by[k](b, n) for b, n in zip(batch, length)) for k in INPUT_NAMES}


def build_config(trt, builder, shapes: dict, workspace_bytes: int, optimization_level: int, cache: bytes):
    """The IBuilderConfig: workspace pool, one optimization profile, optimization level, timing cache."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    config.builder_optimization_level = int(optimization_level)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    timing = config.create_timing_cache(cache)
    config.set_timing_cache(timing, False)  # a cache from another GPU or version is rejected, not mixed in
    return config


def build_plan(onnx_path: Path, out_dir: Path, shapes: dict, workspace_bytes: int = 8 << 30,
               optimization_level: int = 3, timing_cache: Path | None = None) -> None:
    """Parses the ONNX graph and writes out_dir/PLAN_FILE and out_dir/TIMING_CACHE_FILE."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # strongly typed: the only mode in TensorRT 11
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"{onnx_path}: TensorRT cannot parse the graph ({errors})")
    cache = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    config = build_config(trt, builder, shapes, workspace_bytes, optimization_level, cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise InputError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    (out_dir / PLAN_FILE).write_bytes(bytes(plan))
    (out_dir / TIMING_CACHE_FILE).write_bytes(bytes(config.get_timing_cache().serialize()))


class TensorRTRunner:
    """inputs (dict of INPUT_NAMES tensors) -> (probs, score_mean, score_std) CPU float32 tensors."""

    def __init__(self, plan_path: Path):
        trt = _tensorrt()
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise InputError(f"{plan_path}: TensorRT cannot deserialize the plan (built by another TensorRT or GPU?)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        missing = sorted(set(INPUT_NAMES + OUTPUT_NAMES) - names)
        if missing:
            raise InputError(f"{plan_path}: the plan lacks the tensors {missing}")
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                 trt.int64: torch.int64, trt.int32: torch.int32, trt.bool: torch.bool}
        self.dtypes = {n: table[self.engine.get_tensor_dtype(n)] for n in INPUT_NAMES + OUTPUT_NAMES}
        self.local = threading.local()

    def _context(self):
        # An execution context holds per-call shapes and addresses: one per thread, never shared.
        if getattr(self.local, "context", None) is None:
            self.local.context = self.engine.create_execution_context()
            self.local.stream = torch.cuda.Stream()
        return self.local.context, self.local.stream

    def __call__(self, inputs: dict) -> tuple[torch.Tensor, ...]:
        context, stream = self._context()
        feeds = {k: inputs[k].to("cuda", self.dtypes[k]).contiguous() for k in INPUT_NAMES}
        for name, t in feeds.items():
            if not context.set_input_shape(name, tuple(t.shape)):
                raise InputError(f"tensorrt: input {name} of shape {tuple(t.shape)} is outside the engine's profile")
            context.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in OUTPUT_NAMES:
            outs[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=self.dtypes[name], device="cuda")
            context.set_tensor_address(name, outs[name].data_ptr())
        stream.wait_stream(torch.cuda.current_stream())  # the host-to-device copies above
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
        stream.synchronize()
        return tuple(outs[n].float().cpu() for n in OUTPUT_NAMES)
