"""Evaluation: preference accuracy, correlations, distribution quality and calibration, and reports."""

from zreward.eval.metrics import (
    average_ranks,
    cross_entropy_entries,
    ece_pairwise,
    emd,
    emd_entries,
    hpa,
    kl,
    kl_entries,
    margin_hpa,
    masked_mean,
    nll,
    plcc,
    srcc,
)
from zreward.eval.report import evaluate, reliability_diagram, write_report

__all__ = [
    "average_ranks",
    "cross_entropy_entries",
    "ece_pairwise",
    "emd",
    "emd_entries",
    "evaluate",
    "hpa",
    "kl",
    "kl_entries",
    "margin_hpa",
    "masked_mean",
    "nll",
    "plcc",
    "reliability_diagram",
    "srcc",
    "write_report",
]
