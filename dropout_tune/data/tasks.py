"""`load_task`: a registered task or a local file as train / validation / test splits.

Every loaded split has the task's text column(s) plus ``label`` (class id for classification, float for
regression). Each source (`TaskSpec.source`) has one loader, registered in `LOADERS`; the task catalog
(`TASKS`, `get_task`), `TaskSpec` and the split helpers live in leaf modules and are re-exported here.

Example:
    >>> get_task("mrpc").text_columns
    ('sentence1', 'sentence2')
    >>> sorted(LOADERS) == sorted(SOURCES)
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Union

from ..files import looks_like_path
from . import embedded, glue, local
from .catalog import DEFAULT_TASK, TASKS, get_task, task_text_fields
from .splits import MAX_CARVED_VALIDATION, SPLIT_SEED, VALIDATION_FRACTION, assign_splits, carve_validation, subsample
from .taskspec import LABEL, SOURCES, SPLITS, TaskSpec

if TYPE_CHECKING:
    import datasets
    import pandas as pd

__all__ = [
    "DEFAULT_TASK", "LABEL", "LOADERS", "MAX_CARVED_VALIDATION", "SOURCES", "SPLITS", "SPLIT_SEED", "TASKS",
    "TaskSpec", "VALIDATION_FRACTION", "assign_splits", "carve_validation", "frames_to_dataset_dict", "get_task",
    "label_features", "load_task", "task_text_fields",
]

Frames = dict[str, "pd.DataFrame"]
# source -> (loader, the load_task options it takes). A loader takes the TaskSpec (the path, for "local") and
# those options, and returns (spec, frames).
LOADERS: dict[str, tuple[Callable[..., tuple[TaskSpec, Frames]], tuple[str, ...]]] = {
    "embedded": (embedded.load_frames, ("cache_dir",)),
    "glue": (glue.load_frames, ("data_dir",)),
    "local": (local.load_frames, ("text_columns", "label_column", "problem_type")),
}
SOURCE_NOUNS = {"embedded": "embedded task", "glue": "GLUE task", "local": "local file"}
AMBIENT_OPTIONS = ("cache_dir",)  # a setting of the environment: ignored where it does not apply


def label_features(spec: TaskSpec) -> "datasets.Features":
    """The `datasets.Features` of a loaded split: strings for text, `ClassLabel` or float32 for the label."""
    from datasets import ClassLabel, Features, Value

    label = Value("float32") if spec.is_regression else ClassLabel(names=list(spec.label_names))
    return Features({**{c: Value("string") for c in spec.text_columns}, LABEL: label})


def frames_to_dataset_dict(spec: TaskSpec, frames: Mapping[str, "pd.DataFrame"], *, max_train: Optional[int] = None,
                           max_eval: Optional[int] = None, seed: int = 42) -> "datasets.DatasetDict":
    """Normalised pandas splits -> `datasets.DatasetDict`, subsampling train / eval splits with ``seed``."""
    from datasets import Dataset, DatasetDict

    missing = [s for s in SPLITS if s not in frames]
    if missing:
        raise ValueError(f"task {spec.name!r} is missing split(s) {missing}")
    features = label_features(spec)
    columns = list(features)
    result = {}
    for split in SPLITS:
        frame = frames[split]
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ValueError(
                f"split {split!r} of task {spec.name!r} lacks column(s) {absent}; has {list(frame.columns)}"
            )
        limit, field = (max_train, "max_train") if split == "train" else (max_eval, "max_eval")
        frame = subsample(frame[columns].reset_index(drop=True), limit, seed, field)
        result[split] = Dataset.from_pandas(frame, features=features, preserve_index=False)
    return DatasetDict(result)


def check_splits_not_empty(spec: TaskSpec, frames: Mapping[str, "pd.DataFrame"]) -> None:
    """Refuse a task with an empty split before any training (its metrics would be missing after it)."""
    empty = [split for split in SPLITS if len(frames[split]) == 0]
    if empty:
        sizes = ", ".join(f"{split} {len(frames[split])}" for split in SPLITS)
        raise ValueError(
            f"task {spec.name!r} ({spec.description}) has too few rows: {' and '.join(empty)} would be empty "
            f"({sizes}; {spec.split_note}); add rows, or give separate train / validation / test files"
        )


def _is_local_path(name_or_path: Union[str, os.PathLike]) -> bool:
    return isinstance(name_or_path, os.PathLike) or Path(str(name_or_path)).expanduser().exists()


def _check_options(source: str, given: Sequence[str], target: str) -> None:
    """A one-line error for options (``data_dir``, ``text_columns``, ...) that do not apply to ``source``."""
    accepted = LOADERS[source][1]
    misplaced: dict[str, list[str]] = {}
    for option in given:
        if option not in accepted and option not in AMBIENT_OPTIONS:
            scope = " or ".join(SOURCE_NOUNS[s] + "s" for s, (_, options) in LOADERS.items() if option in options)
            misplaced.setdefault(scope, []).append(option)
    if misplaced:
        reasons = "; ".join(f"{', '.join(options)} only appl{'ies' if len(options) == 1 else 'y'} to {scope}"
                            for scope, options in misplaced.items())
        raise ValueError(f"{reasons}, not {target}")


def load_task(
    name_or_path: Union[str, os.PathLike],
    *,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    text_columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    problem_type: Optional[str] = None,
    max_train: Optional[int] = None,
    max_eval: Optional[int] = None,
    seed: int = 42,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
) -> tuple[TaskSpec, "datasets.DatasetDict"]:
    """``(spec, DatasetDict(train=..., validation=..., test=...))`` for a registered task or a local file.

    - embedded tasks (``rotten_tomatoes``, ``snli``, ``vader_movies``) are prepared into ``cache_dir``
      (default ``$DROPOUT_TUNE_CACHE`` or ``~/.cache/dropout_tune``) on first use;
    - GLUE tasks load from ``data_dir`` (GLUE-format TSVs) when given, else from the Hugging Face hub;
    - a path to a CSV / TSV / JSON / JSONL / parquet file (or a directory of ``train.*``, ``validation.*``,
      ``test.*`` files) loads with ``text_columns`` (guessed when omitted) and ``label_column``
      (default ``label``); ``problem_type`` ("classification" | "regression") overrides the guess from the
      label's type.

    ``max_train`` / ``max_eval`` keep a ``seed``-chosen subset of train / of validation and test.

    >>> spec, splits = load_task("rotten_tomatoes", max_train=8, max_eval=4)  # doctest: +SKIP
    >>> splits["train"].num_rows, splits["test"].column_names  # doctest: +SKIP
    (8, ['text', 'label'])
    """
    options = {"data_dir": data_dir, "text_columns": text_columns, "label_column": label_column,
               "problem_type": problem_type, "cache_dir": cache_dir}
    given = [name for name, value in options.items() if value is not None]
    key = str(name_or_path).strip().lower()
    target: Union[TaskSpec, Path]
    if not isinstance(name_or_path, os.PathLike) and key in TASKS:
        target = TASKS[key]
        source, shown = target.source, target.name
    elif _is_local_path(name_or_path):
        target, source, shown = Path(name_or_path), "local", str(name_or_path)
    elif looks_like_path(str(name_or_path)):
        raise FileNotFoundError(f"no such file or directory: {name_or_path} (relative to the working directory "
                                f"{Path.cwd()})")
    else:
        get_task(str(name_or_path))  # raises the "unknown task" error
        raise AssertionError("unreachable")
    _check_options(source, given, f"the {SOURCE_NOUNS[source]} {shown!r}")
    loader, accepted = LOADERS[source]
    spec, frames = loader(target, **{name: options[name] for name in accepted})
    check_splits_not_empty(spec, frames)
    return spec, frames_to_dataset_dict(spec, frames, max_train=max_train, max_eval=max_eval, seed=seed)

