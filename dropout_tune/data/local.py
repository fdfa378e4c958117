"""Local tables: a CSV / TSV / JSON / JSONL / parquet file, or a directory of split files, with labels.

A single file is split 80/10/10 (seed 0); a directory holds ``train.*`` plus optional ``validation.*`` (or
``dev.*``) and ``test.*``, and a missing one is carved out of train.

Classification labels are the values present, numbered 0..k-1 in sorted order (numbers by value, strings
alphabetically): labels {1, 5} become class ids 0 and 1, and the task's ``label_names`` (so the model's
``id2label``) keep ``("1", "5")``. The numbering is logged once (a warning when integer labels change
meaning). A label column with a single class, or mixing numbers and strings, is refused.

Example:
    >>> guess_text_columns(["id", "premise", "hypothesis", "label"])
    ('premise', 'hypothesis')
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from .splits import EIGHTY_TEN_TEN, carve_validation, split_frame
from .taskspec import LABEL, TaskSpec, metrics_for

if TYPE_CHECKING:
    import pandas as pd

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)
MAX_LABELS_SHOWN = 12  # in messages: more distinct labels are elided

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
SPLIT_FILE_STEMS = {"train": ("train",), "validation": ("validation", "valid", "dev", "val"), "test": ("test",)}
# Tried in order when text_columns is not given: the first whose columns all exist wins.
TEXT_COLUMN_GUESSES = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
                       ("question", "sentence"), ("text",), ("sentence",))
PROBLEM_TYPES = ("classification", "regression")


def table_format(path: PathLike) -> Optional[str]:
    """``"csv"``, ``"tsv"``, ``"json"``, ``"jsonl"`` or ``"parquet"`` from the name (compression ignored).

    >>> table_format("reviews.jsonl.gz"), table_format("notes.txt")
    ('jsonl', None)
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return TABLE_FORMATS.get(suffixes[-1]) if suffixes else None


def read_table(path: PathLike) -> "pd.DataFrame":
    """A CSV / TSV / JSON (records or lines) / JSONL / parquet file as a pandas frame; an empty file, or one with
    a header and no rows, is a ``ValueError`` naming the file."""
    import pandas as pd

    try:
        frame = _read_table(path)
    except pd.errors.EmptyDataError:  # pandas' message names no file
        raise ValueError(f"{path}: empty file (no header, no rows)") from None
    if frame.empty:
        raise ValueError(f"{path}: no rows (columns: {[str(c) for c in frame.columns]})")
    return frame


def _read_table(path: PathLike) -> "pd.DataFrame":
    import pandas as pd

    kind = table_format(path)
    if kind == "csv":
        return pd.read_csv(path)
    if kind == "tsv":
        return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind == "jsonl":
        return pd.read_json(path, lines=True)
    if kind == "json":
        try:
            return pd.read_json(path)
        except ValueError:  # "Trailing data": JSON lines under a .json name
            return pd.read_json(path, lines=True)
    raise ValueError(f"unsupported file type {path}; use one of {', '.join(TABLE_FORMATS)} (optionally compressed)")


def guess_text_columns(columns: Sequence[str]) -> Optional[tuple[str, ...]]:
    """The first of `TEXT_COLUMN_GUESSES` present in ``columns``, else None."""
    return next((guess for guess in TEXT_COLUMN_GUESSES if all(c in columns for c in guess)), None)


def _split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or table_format(path) is None:
            continue
        stem = path.name.split(".", 1)[0].lower()
        for split, stems in SPLIT_FILE_STEMS.items():
            if stem in stems and split not in found:
                found[split] = path
    if "train" not in found:
        raise FileNotFoundError(
            f"{directory} has no train file; expected train.csv / .tsv / .json / .jsonl / .parquet "
            "(plus optional validation.* or dev.*, and test.*)"
        )
    return found


def _read_raw_splits(path: Path) -> dict[str, "pd.DataFrame"]:
    """Raw frames per split; a single file gets the key ``"all"`` (split later)."""
    if path.is_dir():
        return {split: read_table(file) for split, file in _split_files(path).items()}
    return {"all": read_table(path)}


def _check_columns(raw: dict[str, "pd.DataFrame"], wanted: Sequence[str], path: Path) -> None:
    for split, frame in raw.items():
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            where = path if split == "all" else f"{path} ({split})"
            raise ValueError(f"{where} has no column(s) {missing}; columns: {[str(c) for c in frame.columns]}")
        for column in wanted:
            empty = frame[column].isna().to_numpy().nonzero()[0]
            if len(empty):
                raise ValueError(f"{path}: column {column!r} is empty in {len(empty)} row(s), first at row {empty[0]}")


def _as_number(value: Any) -> Optional[float]:
    """``value`` as a finite float when it is a number or a string spelling one; None otherwise (booleans too)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numbers_first(text: str) -> tuple[bool, float, str]:
    number = _as_number(text)
    return number is None, number or 0.0, text


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LABELS_SHOWN])
    return shown if len(items) <= MAX_LABELS_SHOWN else f"{shown}, ... ({len(items)} in all)"


@functools.lru_cache(maxsize=None)
def _log_once(level: int, message: str) -> None:
    # A run may load the same file several times (compare, evaluation): the numbering is said once.
    logger.log(level, message)


def label_encoding(labels: "pd.Series", problem_type: Optional[str], where: str
                   ) -> tuple[str, tuple[str, ...], dict]:
    """``(problem type, label names, raw value -> class id)`` from all labels of all splits.

    ``where`` (file and column) starts every error and log message.

    >>> import pandas as pd
    >>> label_encoding(pd.Series([5, 1, 5]), None, "stars.csv, column 'label'")
    ('classification', ('1', '5'), {5: 1, 1: 0})
    >>> label_encoding(pd.Series([1, 1]), None, "ones.csv, column 'label'")
    Traceback (most recent call last):
    ...
    ValueError: ones.csv, column 'label': classification needs at least 2 classes, but every label is 1
    """
    import pandas as pd

    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type {problem_type!r} invalid; choose from {', '.join(PROBLEM_TYPES)}")
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if problem_type is None:
        problem_type = "regression" if numeric and pd.api.types.is_float_dtype(labels) else "classification"
    if problem_type == "regression":
        if not numeric:
            raise ValueError(f"{where}: regression needs numeric labels, got {labels.dtype} values like "
                             f"{labels.iloc[0]!r}")
        return problem_type, (), {}
    nested = labels.map(lambda value: isinstance(value, (list, dict, set, tuple))).to_numpy().nonzero()[0]
    if len(nested):  # JSON lists / objects: unhashable, and not one class
        raise ValueError(f"{where}: a label is one class name or number, got {labels.iloc[nested[0]]!r} "
                         f"(row {nested[0]}); {len(nested)} row(s) hold lists or mappings")
    values = labels.unique().tolist()
    numbers = {value: _as_number(value) for value in values}
    found = sorted({str(v) for v in values}, key=_numbers_first)
    words = [value for value in values if numbers[value] is None]
    if words and len(words) < len(values):
        raise ValueError(f"{where}: labels mix numbers and strings ({_listing(found)}); use class names only or "
                         "class numbers only")
    if words:
        class_of = {value: str(value) for value in values}
    elif all(number.is_integer() for number in numbers.values()):
        class_of = {value: int(number) for value, number in numbers.items()}
    else:
        raise ValueError(f"{where}: classification needs integer or string labels, found {_listing(found)}; "
                         "for scores pass problem_type='regression' (CLI: --problem-type regression)")
    classes = sorted(set(class_of.values()))
    if len(classes) < 2:
        found_text = f"every label is {classes[0]}" if classes else "there are no labels"
        raise ValueError(f"{where}: classification needs at least 2 classes, but {found_text}")
    class_id = {cls: index for index, cls in enumerate(classes)}
    numbering = _listing([f"{cls} -> {index}" for cls, index in class_id.items()])
    if words:
        _log_once(logging.INFO, f"{where}: class ids in sorted order: {numbering}")
    elif classes != list(range(len(classes))):
        _log_once(logging.WARNING, f"{where}: labels renumbered to class ids 0..{len(classes) - 1}: {numbering}")
    return problem_type, tuple(str(cls) for cls in classes), {value: class_id[class_of[value]] for value in values}


def load_frames(path: PathLike, *, text_columns: Optional[Sequence[str]] = None,
                label_column: Optional[str] = None, problem_type: Optional[str] = None,
                ) -> tuple[TaskSpec, dict[str, "pd.DataFrame"]]:
    """The ``local`` source's loader: a file (or directory of split files) -> ``(spec, frames)``."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    raw = _read_raw_splits(path)
    label_column = label_column or LABEL
    if isinstance(text_columns, str):
        text_columns = tuple(c.strip() for c in text_columns.split(",") if c.strip())
    if not text_columns:
        columns = [str(c) for c in next(iter(raw.values())).columns]
        text_columns = guess_text_columns(columns)
        if text_columns is None:
            raise ValueError(f"cannot guess the text column(s) of {path} (columns: {columns}); "
                             "pass text_columns (CLI: --text-columns A[,B])")
    text_columns = tuple(text_columns)
    _check_columns(raw, (*text_columns, label_column), path)
    all_labels = pd.concat([frame[label_column] for frame in raw.values()], ignore_index=True)
    problem_type, label_names, mapping = label_encoding(all_labels, problem_type, f"{path}, column {label_column!r}")
    regression = problem_type == "regression"

    def normalise(frame: "pd.DataFrame") -> "pd.DataFrame":
        out = pd.DataFrame({c: frame[c].astype(str) for c in text_columns})
        labels = frame[label_column]
        out[LABEL] = labels.astype(np.float64) if regression else labels.map(mapping).astype(np.int64)
        return out.reset_index(drop=True)

    frames = {split: normalise(frame) for split, frame in raw.items()}
    if "all" in frames:
        frames = split_frame(frames["all"], EIGHTY_TEN_TEN)
        note = "single file: random 80/10/10 split (seed 0)"
    else:
        carved = [s for s in ("validation", "test") if s not in frames]
        for split in carved:
            frames["train"], frames[split] = carve_validation(frames["train"])
        note = f"split files; {' and '.join(carved)} carved from train (seed 0)" if carved else "split files as given"
    metrics = metrics_for(1 if regression else len(label_names))
    name = path.name.split(".", 1)[0] if path.is_file() else path.name
    spec = TaskSpec(
        name=name or "local", text_columns=text_columns, label_column=label_column,
        num_labels=1 if regression else len(label_names), label_names=label_names, metrics=metrics,
        main_metric=metrics[0], source="local", split_note=note, description=f"local data from {path}",
    )
    return spec, frames
