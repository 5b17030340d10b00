"""Preference data: the dataset format (points.jsonl / pairs.jsonl), its loader and writer, and
importers from published datasets (HPDv2, Pick-a-Pic, ImageRewardDB).

The synthetic world lives in zreward.data.shapeworld; it is imported on use, not here.
"""

from zreward.data.dataset import (
    PAIRS_FILE,
    POINTS_FILE,
    PREFERENCES,
    RUBRIC_FILE,
    ImageRef,
    Pair,
    Point,
    PreferenceDataset,
    derive_pairs,
    load_dataset,
    read_rubric,
    split_by_prompt,
    write_dataset,
)
from zreward.data.importers import (
    IMPORTERS,
    ImportReport,
    import_dataset,
    import_hpdv2,
    import_imagerewarddb,
    import_pickapic,
)

__all__ = [
    "IMPORTERS",
    "PAIRS_FILE",
    "POINTS_FILE",
    "PREFERENCES",
    "RUBRIC_FILE",
    "ImageRef",
    "ImportReport",
    "Pair",
    "Point",
    "PreferenceDataset",
    "derive_pairs",
    "import_dataset",
    "import_hpdv2",
    "import_imagerewarddb",
    "import_pickapic",
    "load_dataset",
    "read_rubric",
    "split_by_prompt",
    "write_dataset",
]
