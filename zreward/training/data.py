"""Finding the training and validation splits of a dataset folder."""

from __future__ import annotations

from pathlib import Path

from zreward.data import load_dataset, read_rubric
from zreward.data.dataset import PAIRS_FILE, POINTS_FILE, PreferenceDataset
from zreward.errors import InputError


def resolve_splits(root) -> tuple[PreferenceDataset, PreferenceDataset | None]:
    """`root/train` (+ `root/val`) when present (ShapeWorld's layout), else `root` itself with no val.

    The rubric is the one train/rubric.json (or root/rubric.json) declares, else the default; val must agree.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset directory not found")
    if (root / "train" / POINTS_FILE).is_file():
        train = load_dataset(root / "train", read_rubric(root))  # train/rubric.json, if any, must agree
        val = load_dataset(root / "val", train.rubric) if (root / "val" / POINTS_FILE).is_file() else None
        return train, val
    if (root / POINTS_FILE).is_file():
        return load_dataset(root), None
    if (root / PAIRS_FILE).is_file() or (root / "train" / PAIRS_FILE).is_file():
        raise InputError(f"{root}: only {PAIRS_FILE}; the SFT student learns from annotator scores in {POINTS_FILE} "
                         f"(a pairs-only dataset is enough for zreward eval)")
    raise InputError(f"{root}: no {POINTS_FILE} (nor train/{POINTS_FILE}) to train on")
