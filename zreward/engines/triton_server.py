"""A Triton Inference Server model repository for an engine (`zreward export --format triton`).

    OUT/manifest.json                   the engine manifest (layout "triton")
    OUT/zreward/config.pbtxt            ensemble: IMAGE (uint8 HWC) + PROMPT (string) -> PROBS, MEAN, STD
    OUT/zreward/1/                      (an ensemble has no files; the version folder must exist)
    OUT/zreward_preprocess/config.pbtxt Python backend: the package's host preprocessing
    OUT/zreward_preprocess/1/model.py   imports zreward.engines.triton_preprocess
    OUT/zreward_preprocess/1/engine/    host.json (the manifest) + tokenizer/
    OUT/zreward_scorer/config.pbtxt     the graph: onnxruntime_onnx or tensorrt_plan, dynamic batching
    OUT/zreward_scorer/1/model.onnx | model.plan

The scorer's text length is fixed at the template's maximum (the preprocessor pads every row to it)
so that Triton's dynamic batcher can stack requests. Clients that run preprocessing themselves call
`zreward_scorer` directly with `HostInputs(..., fixed_length=True)` tensors.
"""

from __future__ import annotations

from pathlib import Path

from zreward.errors import InputError

ENSEMBLE, PREPROCESS, SCORER = "zreward", "zreward_preprocess", "zreward_scorer"
DTYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "uint8": "TYPE_UINT8", "string": "TYPE_STRING"}
MODEL_PY = '''"""Triton Python-backend model: zreward's host preprocessing (zreward must be installed in this Python)."""

from zreward.engines.triton_preprocess import TritonPythonModel  # noqa: F401
'''


class Enum(str):
    """An enum value in protobuf text format (written bare, not quoted)."""


def to_pbtxt(message: dict, indent: int = 0) -> str:
    """Nested dict -> protobuf text format. Lists are repeated fields; dict values of a field named
    *_map or parameters are written as map entries."""
    pad, lines = "  " * indent, []
    for key, value in message.items():
        items = value if isinstance(value, list) else [value]
        if key.endswith("_map") or key == "parameters":
            items = [{"key": k, "value": v} for k, v in value.items()]
        for item in items:
            if isinstance(item, dict):
                lines.append(f"{pad}{key} {{\n{to_pbtxt(item, indent + 1)}{pad}}}")
            elif isinstance(item, Enum):
                lines.append(f"{pad}{key}: {item}")
            elif isinstance(item, bool):
                lines.append(f"{pad}{key}: {'true' if item else 'false'}")
            elif isinstance(item, str):
                lines.append(f'{pad}{key}: "{item}"')
            else:
                lines.append(f"{pad}{key}: {item}")
    return "".join(line + "\n" for line in lines)


def _tensor(name: str, dtype: str, dims) -> dict:
    return {"name": name, "data_type": Enum(DTYPES[dtype]), "dims": [int(d) for d in dims]}


def scorer_config(manifest: dict, options: dict) -> dict:
    """The graph model: fixed per-row shapes, dynamic batching, instance groups."""
    g, text, batch = manifest["graph"], manifest["text"], manifest["batch"]
    n = text["max_length"]
    d = g["dims"]
    k = len(manifest["rubric"]["values"])
    trt = manifest["backend"] == "tensorrt"
    gpu = trt or manifest["device"].startswith("cuda")
    preferred = sorted({int(b) for b in options.get("preferred_batch_sizes", [batch["opt"], batch["max"]])})
    return {
        "name": SCORER,
        "platform": "tensorrt_plan" if trt else "onnxruntime_onnx",
        "default_model_filename": Path(g["file"]).name,
        "max_batch_size": batch["max"],
        "input": [_tensor("pixel_values", "float32", (g["patches"], g["features"])),
                  _tensor("input_ids", "int64", (n,)), _tensor("attention_mask", "int64", (n,)),
                  _tensor("position_ids", "int64", (3, n)), _tensor("read_positions", "int64", (d,))],
        "output": [_tensor("probs", "float32", (d, k)), _tensor("score_mean", "float32", (d,)),
                   _tensor("score_std", "float32", (d,))],
        "dynamic_batching": {"preferred_batch_size": preferred,
                             "max_queue_delay_microseconds": int(options.get("max_queue_delay_us", 1000))},
        "instance_group": [{"count": int(options.get("instances", 1)),
                            "kind": Enum(options.get("kind", "KIND_GPU" if gpu else "KIND_CPU"))}],
    }


def preprocess_config(manifest: dict, options: dict) -> dict:
    """Python backend: one (H, W, 3) uint8 image and one prompt per row -> the graph's inputs."""
    g, n = manifest["graph"], manifest["text"]["max_length"]
    return {
        "name": PREPROCESS,
        "backend": "python",
        "max_batch_size": manifest["batch"]["max"],
        "input": [_tensor("IMAGE", "uint8", (-1, -1, 3)), _tensor("PROMPT", "string", (1,))],
        "output": [_tensor("pixel_values", "float32", (g["patches"], g["features"])),
                   _tensor("input_ids", "int64", (n,)), _tensor("attention_mask", "int64", (n,)),
                   _tensor("position_ids", "int64", (3, n)), _tensor("read_positions", "int64", (g["dims"],))],
        "instance_group": [{"count": int(options.get("preprocess_instances", 2)), "kind": Enum("KIND_CPU")}],
    }


def ensemble_config(manifest: dict) -> dict:
    d, k = manifest["graph"]["dims"], len(manifest["rubric"]["values"])
    graph_inputs = ["pixel_values", "input_ids", "attention_mask", "position_ids", "read_positions"]
    return {
        "name": ENSEMBLE,
        "platform": "ensemble",
        "max_batch_size": manifest["batch"]["max"],
        "input": [_tensor("IMAGE", "uint8", (-1, -1, 3)), _tensor("PROMPT", "string", (1,))],
        "output": [_tensor("PROBS", "float32", (d, k)), _tensor("MEAN", "float32", (d,)),
                   _tensor("STD", "float32", (d,))],
        "ensemble_scheduling": {"step": [
            {"model_name": PREPROCESS, "model_version": -1, "input_map": {"IMAGE": "IMAGE", "PROMPT": "PROMPT"},
             "output_map": {t: t for t in graph_inputs}},
            {"model_name": SCORER, "model_version": -1, "input_map": {t: t for t in graph_inputs},
             "output_map": {"probs": "PROBS", "score_mean": "MEAN", "score_std": "STD"}},
        ]},
    }


def write_model_repository(root: Path, manifest: dict, options: dict | None = None) -> None:
    """Writes the three models' configs (the graph and host files are already in place)."""
    options = dict(options or {})
    unknown = set(options) - {"instances", "kind", "preferred_batch_sizes", "max_queue_delay_us",
                              "preprocess_instances"}
    if unknown:
        raise InputError(f"unknown triton option(s) {sorted(unknown)}")
    configs = {SCORER: scorer_config(manifest, options), PREPROCESS: preprocess_config(manifest, options),
               ENSEMBLE: ensemble_config(manifest)}
    for name, config in configs.items():
        (root / name / "1").mkdir(parents=True, exist_ok=True)
        text = to_pbtxt(config)
        parse_config(text, f"{name}/config.pbtxt")  # the writer's own output must be a valid ModelConfig
        (root / name / "config.pbtxt").write_text(text)
    (root / PREPROCESS / "1" / "model.py").write_text(MODEL_PY)


def parse_config(text: str, where: str = "config.pbtxt"):
    """Parses config.pbtxt text into a ModelConfig message; unknown fields or bad types raise InputError."""
    from google.protobuf import text_format

    from zreward.engines.triton_schema import model_config_class

    message = model_config_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise InputError(f"{where}: not a valid Triton model config ({e})") from None
    return message
