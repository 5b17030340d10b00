"""A small byte-level BPE tokenizer for tiny backbones, built locally (no hub).

Byte-level means every string encodes (any language, any symbol): the 256 bytes are the base
alphabet and merges only shorten common words. It carries the Qwen chat/vision special tokens the
HF model classes expect, plus the rubric's score tokens and slot token as added special tokens.
"""

from __future__ import annotations

from typing import Iterable

from zreward.rubric import Rubric

CHAT_TOKENS = {
    "pad": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
}

# Words the tiny tokenizer learns merges for; any other text still encodes byte by byte.
_SEED_WORDS = """
a an the and of on with in at to is are one two three four five six seven eight nine ten
red green blue yellow purple orange pink brown black white gray grey cyan magenta teal
circle circles square squares triangle triangles star stars hexagon hexagons diamond diamonds
ellipse ellipses cross crosses heart hearts small large big tiny huge left right above below
next beside near far under over background image prompt rate score rating dimension picture
photo of a cat dog person tree house car sky mountain city street sunset water river flower
alignment fidelity aesthetics plausibility user assistant system reward model judge each from
""".split()


def special_tokens(rubric: Rubric) -> list[str]:
    return list(CHAT_TOKENS.values()) + list(rubric.score_tokens) + [rubric.slot_token]


def build_tokenizer(rubric: Rubric, corpus: Iterable[str] = (), vocab_size: int = 512):
    """Trains a byte-level BPE on `corpus` + built-in words; returns a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = special_tokens(rubric)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = list(corpus) + [" ".join(_SEED_WORDS)] * 4 + [f"{d.name}: {d.description}" for d in rubric.dimensions]
    tok.train_from_iterator(text, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=CHAT_TOKENS["pad"],
        eos_token=CHAT_TOKENS["im_end"],
        additional_special_tokens=[t for t in specials if t not in (CHAT_TOKENS["pad"], CHAT_TOKENS["im_end"])],
    )
    return fast


def ensure_rubric_tokens(tokenizer, rubric: Rubric) -> list[str]:
    """Adds the rubric's score and slot tokens to a (real) tokenizer that lacks them; returns the added."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in list(rubric.score_tokens) + [rubric.slot_token] if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return missing


def token_ids(tokenizer, tokens: Iterable[str]) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in tokens]
