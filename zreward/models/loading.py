"""Building and loading reward models: zreward checkpoints, base VLM checkpoints, tiny models."""

from __future__ import annotations

from pathlib import Path

import torch

from zreward.errors import InputError
from zreward.models.processing import PromptTemplate
from zreward.models.reward_model import FORMAT_VERSION, SPEC_FILE, ZRewardModel
from zreward.models.tokenizer import CHAT_TOKENS, build_tokenizer, ensure_rubric_tokens, token_ids
from zreward.rubric import Rubric, default_rubric

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"
# Base checkpoints have no fixed resolution of their own; this one keeps a 7B student fast.
BASE_IMAGE_SIZE = 448


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise InputError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def load_pretrained(path, rubric: Rubric | None = None, image_size: int | None = None, dtype=None,
                    device=None, attn_implementation: str = "sdpa") -> ZRewardModel:
    """A zreward checkpoint directory, or any supported base VLM (local dir or hub id).

    A base checkpoint gets the rubric's score and slot tokens added (embeddings resized; the new
    rows start from the embeddings of the score's digits) and must then be trained.
    """
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    path_str = str(path)
    local = Path(path_str).expanduser()
    spec = None
    if local.exists():
        if not local.is_dir():
            raise InputError(f"{local}: a model must be a directory (or a hub id)")
        path_str = str(local)
        if (local / SPEC_FILE).is_file():
            spec = _read_spec(local)
        elif not (local / "config.json").is_file():
            raise InputError(f"{local}: not a model directory (no {SPEC_FILE} or config.json)")
    elif _looks_like_a_path(path_str):
        raise InputError(f"{path_str}: no such model directory")
    torch_dtype = _dtype(dtype)
    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_str)
        backbone = AutoModelForImageTextToText.from_pretrained(
            path_str, dtype=torch_dtype or torch.float32, attn_implementation=attn_implementation
        )
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 -- hub, config, tokenizer and weight files each raise their own types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"{path_str}: cannot load model ({type(e).__name__}: {first})") from None
    template = PromptTemplate()
    temperature = 1.0
    if spec is not None:
        saved = Rubric.from_dict(spec["rubric"])
        if rubric is not None and rubric != saved:
            raise InputError(f"{path_str}: checkpoint rubric {saved.names} x {list(saved.values)} does not match "
                             f"the requested rubric {rubric.names} x {list(rubric.values)}")
        rubric = saved
        template = PromptTemplate(**spec.get("template", {}))
        temperature = float(spec.get("temperature", 1.0))
        if image_size is not None and image_size != spec["image_size"]:
            raise InputError(f"{path_str}: trained at image_size {spec['image_size']}, asked for {image_size}")
        image_size = spec["image_size"]
        if spec.get("backbone") != backbone.config.model_type:
            raise InputError(f"{path_str}: spec says {spec.get('backbone')}, weights are {backbone.config.model_type}")
    else:
        rubric = rubric or default_rubric()
        added = ensure_rubric_tokens(tokenizer, rubric)
        if added:
            _grow_embeddings(backbone, tokenizer, rubric)
        image_size = image_size or BASE_IMAGE_SIZE
        template = PromptTemplate(describe_dimensions=True)
    model = ZRewardModel(backbone, tokenizer, rubric, image_size, template, temperature)
    if device is not None:
        model.to(device)
    return model.eval()


SPEC_KEYS = {"format_version": int, "backbone": str, "image_size": int, "rubric": dict}


def _read_spec(local: Path) -> dict:
    """zreward.json, checked: a damaged one is an error that names the file and the key."""
    from zreward.io import read_json

    where = local / SPEC_FILE
    spec = read_json(where)
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(spec).__name__}")
    for key, kind in SPEC_KEYS.items():
        if key not in spec:
            raise InputError(f"{where}: missing key {key!r}")
        if not isinstance(spec[key], kind) or isinstance(spec[key], bool):
            raise InputError(f"{where}: {key!r} must be {kind.__name__}, got {type(spec[key]).__name__}")
    if spec["format_version"] != FORMAT_VERSION:
        raise InputError(f"{local}: checkpoint format {spec['format_version']!r}, expected {FORMAT_VERSION}")
    try:
        Rubric.from_dict(spec["rubric"])
    except InputError as e:  # from_dict turns every malformed form into an InputError
        raise InputError(f"{where}: rubric: {e}") from None
    return spec


def _looks_like_a_path(name: str) -> bool:
    """A hub id is `name` or `org/name`; anything else that does not exist here is a missing directory."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name


def _quiet_transformers() -> None:
    """Loading progress bars and info logs are noise in a scoring tool; warnings still show, except the
    hub client's retry chatter (its final error becomes our one-line message)."""
    import logging as std_logging

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    for name in ("huggingface_hub", "urllib3", "httpx"):
        std_logging.getLogger(name).setLevel(std_logging.ERROR)


def _grow_embeddings(backbone, tokenizer, rubric: Rubric) -> None:
    old = backbone.get_input_embeddings().weight.shape[0]
    backbone.resize_token_embeddings(len(tokenizer))
    emb = backbone.get_input_embeddings().weight
    head = backbone.get_output_embeddings().weight
    with torch.no_grad():
        for tok, value in zip(list(rubric.score_tokens) + [rubric.slot_token], list(rubric.values) + [None]):
            i = tokenizer.convert_tokens_to_ids(tok)
            if i < old:
                continue
            text = f"{value:g}" if value is not None else " "
            src = [j for j in tokenizer.encode(text, add_special_tokens=False) if j < old] or [0]
            emb[i] = emb[src].mean(0)
            if head is not emb:
                head[i] = head[src].mean(0)


def build_tiny_model(model_type: str = "qwen2_vl", rubric: Rubric | None = None, image_size: int | None = None,
                     corpus=(), seed: int = 0, **config_kwargs) -> ZRewardModel:
    """A randomly initialized tiny reward model with the real family's classes and a local tokenizer."""
    from transformers import AutoModelForImageTextToText

    from zreward.models.backbones import family_of, tiny_config

    rubric = rubric or default_rubric()
    tokenizer = build_tokenizer(rubric, corpus)
    names = {"image_token_id": "image_pad", "video_token_id": "video_pad", "vision_start_token_id": "vision_start",
             "vision_end_token_id": "vision_end", "pad_token_id": "pad", "eos_token_id": "im_end"}
    ids = dict(zip(names, token_ids(tokenizer, [CHAT_TOKENS[v] for v in names.values()])))
    config = tiny_config(model_type, len(tokenizer), ids, **config_kwargs)
    torch.manual_seed(seed)
    config._attn_implementation = "sdpa"
    backbone = AutoModelForImageTextToText.from_config(config)
    image_size = image_size or family_of(config).factor * 4
    return ZRewardModel(backbone, tokenizer, rubric, image_size).eval()
