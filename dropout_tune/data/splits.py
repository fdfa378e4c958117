"""Seeded, group-aware splitting shared by every loader.

Splits are fixed by `SPLIT_SEED` so that every run sees the same test set; a training seed only picks
``max_train`` / ``max_eval`` subsamples (`subsample`).

Example:
    >>> import pandas as pd
    >>> frames = split_frame(pd.DataFrame({"x": range(10)}), {"train": 0.8, "validation": 0.1, "test": 0.1})
    >>> [len(frames[s]) for s in ("train", "validation", "test")]
    [8, 1, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SPLIT_SEED = 0  # fixed: the splits never depend on the training seed
# Where a task has no labelled validation split, one is carved out of train: this fraction, at most this many.
VALIDATION_FRACTION = 0.1
MAX_CARVED_VALIDATION = 10_000
EIGHTY_TEN_TEN = {"train": 0.8, "validation": 0.1, "test": 0.1}


def _rng(seed: int) -> np.random.RandomState:
    # The legacy RandomState stream is frozen across NumPy versions (Generator's is not): splits stay put.
    return np.random.RandomState(seed)


def assign_splits(groups: Sequence, fractions: Mapping[str, float], seed: int = SPLIT_SEED) -> np.ndarray:
    """Split name per row, keeping every group (movie, premise, ...) in a single split.

    Groups are sorted, shuffled with ``seed``, and cut by ``fractions`` (rounded; the last split takes the rest).

    >>> assign_splits(["a", "a", "b", "c"], {"train": 0.5, "test": 0.5}).tolist()
    ['test', 'test', 'train', 'train']
    """
    names = list(fractions)
    if not names or any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {dict(fractions)}")
    groups = np.asarray(groups)
    unique = np.unique(groups)
    order = unique[_rng(seed).permutation(len(unique))]
    bounds = np.round(np.cumsum([fractions[n] for n in names]) * len(unique)).astype(int)
    bounds[-1] = len(unique)
    split_of_group = {}
    start = 0
    for name, stop in zip(names, bounds):
        split_of_group.update((g, name) for g in order[start:stop])
        start = stop
    return np.array([split_of_group[g] for g in groups.tolist()], dtype=object)


def carve_validation(train: "pd.DataFrame", groups: Optional[Sequence] = None, seed: int = SPLIT_SEED,
                     ) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """``(train, validation)``: `VALIDATION_FRACTION` of train (at most `MAX_CARVED_VALIDATION` rows, by group)."""
    groups = np.arange(len(train)) if groups is None else np.asarray(groups)
    n_groups = max(1, len(np.unique(groups)))
    fraction = min(VALIDATION_FRACTION, MAX_CARVED_VALIDATION / max(1, len(train)))
    fraction = max(fraction, 1 / n_groups) if n_groups > 1 else 0.0  # at least one group when possible
    parts = split_frame(train, {"validation": fraction, "train": 1 - fraction}, groups, seed)
    return parts["train"], parts["validation"]


def split_frame(frame: "pd.DataFrame", fractions: Mapping[str, float], groups: Optional[Sequence] = None,
                seed: int = SPLIT_SEED) -> dict[str, "pd.DataFrame"]:
    """``{split: rows}`` cut by `assign_splits` (every row its own group unless ``groups`` is given)."""
    split = assign_splits(np.arange(len(frame)) if groups is None else groups, fractions, seed)
    return {name: frame[split == name].reset_index(drop=True) for name in fractions}


def subsample(frame: "pd.DataFrame", limit: Optional[int], seed: int, field: str) -> "pd.DataFrame":
    """``limit`` rows chosen with ``seed`` (in their original order); all of them when ``limit`` is None."""
    if limit is None or limit >= len(frame):
        return frame
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{field} must be a positive integer or None, got {limit!r}")
    keep = np.sort(_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[keep].reset_index(drop=True)
