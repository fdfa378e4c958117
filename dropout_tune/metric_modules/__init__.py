"""The calibration metrics as Hugging Face ``evaluate`` modules, shipped inside the package and loaded offline by
path: ``evaluate.load(dropout_tune.metric_path("ece"))``. Each computes exactly what ``dropout_tune.calibration``
computes, from class probabilities (``predictions``, one row per example; a single number per example is read as
P(class 1)) and integer labels (``references``), with an optional ``n_bins`` (default 15) for the binned ones.

>>> metric_path("ece").endswith("ece")
True
"""

from __future__ import annotations

from pathlib import Path

#: The metrics shipped as evaluate modules.
METRICS = ("ece", "adaptive_ece", "brier", "nll")


def metric_path(name: str) -> str:
    """The folder of the ``evaluate`` module of calibration metric ``name``, for ``evaluate.load``."""
    if name not in METRICS:
        raise ValueError(f"unknown calibration metric {name!r}; valid: {', '.join(METRICS)}")
    return str(Path(__file__).resolve().parent / name)
