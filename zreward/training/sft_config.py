"""Configuration of the SFT student recipe (soft-label CE on annotator histograms, as DeQA-Score)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

# sft_config_for's Trainer scratch folder (save_strategy "no": nothing is kept there); train_sft removes it.
SCRATCH_PREFIX = "zreward-trainer-"


@dataclass
class SFTStudentConfig(TrainingArguments):
    """TrainingArguments plus the recipe's own knobs; every field has help text (`--help` shows it)."""

    init: str | None = field(
        default=None,
        metadata={"help": "Start from 'default' (the embedded model), a zreward checkpoint or base VLM "
                          "(directory or hub id); None builds a fresh tiny model (the default model's recipe)."},
    )
    backbone: str = field(
        default="qwen2_vl",
        metadata={"help": "Backbone family for a fresh tiny model: qwen2_vl, qwen2_5_vl, qwen3_vl or qwen3_5."},
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Square input resolution of a fresh model (default: 4 x patch x merge), or a new "
                                        "resolution for the --init model (its weights carry over)."}
    )
    hidden_size: int = field(default=128, metadata={"help": "Language model width of a fresh tiny model."})
    num_layers: int = field(default=4, metadata={"help": "Language model depth of a fresh tiny model."})
    vision_hidden_size: int = field(default=64, metadata={"help": "Vision tower width of a fresh tiny model."})
    vision_depth: int = field(default=4, metadata={"help": "Vision tower depth of a fresh tiny model."})
    pair_loss_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of the Thurstone pair loss on same-prompt pairs in a batch (0 disables)."},
    )
    groups_per_batch: int = field(
        default=8,
        metadata={"help": "Prompt groups per batch; every image of a group is in the batch, so the pair "
                          "loss sees each same-prompt pair."},
    )
    caption_loss_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of an auxiliary next-token loss on the prompt tokens (the image comes first, so "
                          "this is captioning: it binds words to pixels, which the alignment slot needs). Only "
                          "images whose alignment is rated in the top quarter of the scale count (every image without an alignment "
                          "dimension). 0 disables."},
    )
    explanation_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of an auxiliary next-token loss on the first --explanation-tokens tokens of each "
                          "point's rationale, appended AFTER the score slots (the student learns to say what it sees "
                          "and what fails; scoring is unchanged, since attention is causal). Points without a "
                          "rationale skip it. 0 disables."},
    )
    explanation_tokens: int = field(
        default=64, metadata={"help": "How many rationale tokens the explanation loss covers (longer costs more)."}
    )
    max_images_per_group: int = field(
        default=6, metadata={"help": "Larger prompt groups are split into chunks of at most this many images."}
    )
    max_minutes: float | None = field(
        default=None, metadata={"help": "Stop training after this many minutes of wall time (None: no limit)."}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the language model's projections (0: full fine-tuning)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj", metadata={"help": "Comma-separated module names LoRA adapts."}
    )
    vision_warmup_minutes: float = field(
        default=0.0,
        metadata={"help": "Minutes of vision warm-up before the student (vision tower + a pooled linear probe on "
                          "the histograms; see zreward.training.vision_warmup). 0 skips it."},
    )
    vision_warmup_lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of the vision warm-up."})
    vision_warmup_batch_size: int = field(default=32, metadata={"help": "Images per step of the vision warm-up."})
    images_on_device: bool | None = field(
        default=None,
        metadata={"help": "Data-loader workers only decode; the step resizes, normalizes and patchifies on the "
                          "training device (zreward.training.device_images). None: on whenever training runs "
                          "off the CPU."},
    )
    widen: int = field(
        default=1,
        metadata={"help": "Make the --init model this many times wider before training, keeping its scores "
                          "(zreward.models.widen: every width repeated, plus a 1% symmetry-breaking perturbation; "
                          "qwen2_vl only). 1 keeps it as it is."},
    )
    seed_model: int = field(default=0, metadata={"help": "Seed of a fresh model's random initialization."})
