"""Reward models over Hugging Face VLM backbones."""

from zreward.models.backbones import FAMILIES, family_of
from zreward.models.loading import DEFAULT_MODEL_DIR, build_tiny_model, load_pretrained
from zreward.models.processing import PromptTemplate
from zreward.models.reward_model import ZRewardModel

__all__ = ["DEFAULT_MODEL_DIR", "FAMILIES", "PromptTemplate", "ZRewardModel", "build_tiny_model", "family_of",
           "load_model", "load_pretrained"]


def load_model(model=None, **kwargs) -> ZRewardModel:
    """None -> the embedded default model; otherwise a zreward checkpoint dir, base checkpoint or hub id."""
    from zreward.errors import InputError

    if model is None or model == "default":
        if not (DEFAULT_MODEL_DIR / "zreward.json").is_file():
            raise InputError(f"the embedded default model is missing from {DEFAULT_MODEL_DIR} (reinstall zreward)")
        model = DEFAULT_MODEL_DIR
    return load_pretrained(model, **kwargs)
