"""Local data: GLUE-format directories and any CSV / TSV / JSON / JSONL / parquet file with labels.

GLUE files are the TSVs of the original GLUE release (``SST-2/train.tsv`` with a ``sentence\\tlabel``
header, header-less ``CoLA/train.tsv``, ``MNLI/dev_matched.tsv``, MRPC's ``msr_paraphrase_*.txt``, ...).
GLUE test labels are hidden, so ``train.tsv`` is split into train + validation and the dev file is the test.

A local table is split 80/10/10 (seed 0) when it is a single file; a directory may hold ``train.*`` plus
``validation.*`` (or ``dev.*``) and ``test.*``, and a missing one is carved out of train.

Example:
    >>> GLUE_FORMATS["mnli"].test_files
    ('dev_matched.tsv',)
    >>> guess_text_columns(["id", "premise", "hypothesis", "label"])
    ('premise', 'hypothesis')
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from .tasks import LABEL, SPLITS, TaskSpec, assign_splits, carve_validation

if TYPE_CHECKING:
    import pandas as pd

PathLike = Union[str, os.PathLike]
Column = Union[str, int]  # a header name, or a position in a header-less file


@dataclass(frozen=True)
class GlueFormat:
    """Where a GLUE task's columns sit in the original release's files."""

    directory: str
    text_sources: tuple[Column, ...]
    label_source: Column
    header: bool = True
    train_files: tuple[str, ...] = ("train.tsv",)
    test_files: tuple[str, ...] = ("dev.tsv",)  # first one present wins


_PAIR = ("sentence1", "sentence2")
GLUE_FORMATS: dict[str, GlueFormat] = {
    # CoLA rows: source, label, original annotation, sentence (no header row).
    "cola": GlueFormat("CoLA", (3,), 1, header=False),
    "sst2": GlueFormat("SST-2", ("sentence",), "label"),
    # MRPC: GLUE's train/dev.tsv, or Microsoft's msr_paraphrase_{train,test}.txt (same header, labelled test).
    "mrpc": GlueFormat("MRPC", ("#1 String", "#2 String"), "Quality",
                       train_files=("train.tsv", "msr_paraphrase_train.txt"),
                       test_files=("dev.tsv", "msr_paraphrase_test.txt")),
    "qqp": GlueFormat("QQP", ("question1", "question2"), "is_duplicate"),
    "stsb": GlueFormat("STS-B", _PAIR, "score"),
    "mnli": GlueFormat("MNLI", _PAIR, "gold_label", test_files=("dev_matched.tsv",)),
    "qnli": GlueFormat("QNLI", ("question", "sentence"), "label"),
    "rte": GlueFormat("RTE", _PAIR, "label"),
    "wnli": GlueFormat("WNLI", _PAIR, "label"),
}


def _read_tsv_rows(path: Path) -> list[list[str]]:
    # GLUE sentences contain unbalanced quotes: no quoting at all (as the GLUE loaders do).
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]


def _glue_label(spec: TaskSpec, raw: str, where: str) -> Union[int, float]:
    raw = raw.strip()
    try:
        if spec.is_regression:
            return float(raw)
        if raw in spec.label_names:
            return spec.label_names.index(raw)
        if raw.isdigit() and int(raw) < spec.num_labels:
            return int(raw)
    except ValueError:
        pass
    choices = "a number" if spec.is_regression else f"one of {spec.label_names} or 0..{spec.num_labels - 1}"
    raise ValueError(f"{where}: label {raw!r} is not {choices}")


def read_glue_file(spec: TaskSpec, path: PathLike) -> "pd.DataFrame":
    """One GLUE-format TSV -> a frame with the task's text columns and ``label``."""
    import pandas as pd

    path = Path(path)
    fmt = GLUE_FORMATS[spec.name]
    rows = _read_tsv_rows(path)
    sources = (*fmt.text_sources, fmt.label_source)
    targets = (*spec.text_columns, LABEL)
    if fmt.header:
        if not rows:
            raise ValueError(f"{path} is empty; expected a header row")
        header, rows, first_line = rows[0], rows[1:], 2
        positions = []
        for source, target in zip(sources, targets):
            # Also accept the Hugging Face column names, for TSVs exported from `datasets`.
            found = next((header.index(n) for n in (source, target) if n in header), None)
            if found is None:
                raise ValueError(f"{path} has no column {source!r} (nor {target!r}); header: {header}")
            positions.append(found)
    else:
        positions, first_line = list(sources), 1
    width = max(positions) + 1
    records = []
    for number, row in enumerate(rows, start=first_line):
        where = f"{path}:{number}"
        if len(row) < width:
            raise ValueError(f"{where}: expected at least {width} tab-separated fields, got {len(row)}")
        *texts, label = (row[i] for i in positions)
        records.append((*texts, _glue_label(spec, label, where)))
    return pd.DataFrame(records, columns=list(targets))


def glue_task_dir(spec: TaskSpec, data_dir: PathLike) -> Path:
    """``data_dir/<GLUE dir>`` (e.g. ``glue_data/SST-2``) when it exists, else ``data_dir`` itself."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"GLUE data_dir {root} is not a directory")
    directory = GLUE_FORMATS[spec.name].directory
    for name in (directory, directory.lower(), spec.name):
        if (root / name).is_dir():
            return root / name
    return root


def _first_existing(directory: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no GLUE {what} file in {directory}: expected {' or '.join(names)}")


def load_glue_dir_frames(spec: TaskSpec, data_dir: PathLike) -> dict[str, "pd.DataFrame"]:
    """GLUE-format files -> train (train file minus a carved validation), validation, test (= dev file)."""
    fmt = GLUE_FORMATS[spec.name]
    directory = glue_task_dir(spec, data_dir)
    train = read_glue_file(spec, _first_existing(directory, fmt.train_files, "train"))
    test = read_glue_file(spec, _first_existing(directory, fmt.test_files, "dev (used as test)"))
    train, validation = carve_validation(train)
    return {"train": train, "validation": validation, "test": test}


# ------------------------------------------------------------------------------------------ local tables

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
    """A CSV / TSV / JSON (records or lines) / JSONL / parquet file as a pandas frame."""
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
    if table_format(path) is None:
        raise ValueError(f"unsupported file type {path}; use one of {', '.join(TABLE_FORMATS)} (optionally compressed)")
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


def _label_encoding(labels: "pd.Series", problem_type: Optional[str]) -> tuple[str, tuple[str, ...], dict]:
    """``(problem type, label names, raw value -> class id)`` from all labels of all splits."""
    import pandas as pd

    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type {problem_type!r} invalid; choose from {', '.join(PROBLEM_TYPES)}")
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if problem_type is None:
        problem_type = "regression" if numeric and pd.api.types.is_float_dtype(labels) else "classification"
    if problem_type == "regression":
        if not numeric:
            raise ValueError(f"regression needs numeric labels, got {labels.dtype} values like {labels.iloc[0]!r}")
        return problem_type, (), {}
    values = sorted(labels.unique().tolist(), key=lambda v: (str(type(v)), v))
    if numeric and not all(float(v).is_integer() for v in values):
        raise ValueError("classification needs integer or string labels; pass problem_type='regression' for scores")
    if numeric and min(values) >= 0 and max(values) < 1000:
        # 0..k-1 class ids keep their meaning; names are the ids.
        count = int(max(values)) + 1
        mapping = {v: int(v) for v in values}
        names = tuple(str(i) for i in range(count))
    else:
        mapping = {v: i for i, v in enumerate(values)}
        names = tuple(str(v) for v in values)
    if len(names) < 2:
        raise ValueError(f"classification needs at least 2 classes; the label column only holds {values}")
    return problem_type, names, mapping


def load_local_frames(path: PathLike, *, text_columns: Optional[Sequence[str]] = None,
                      label_column: Optional[str] = None, problem_type: Optional[str] = None,
                      ) -> tuple[TaskSpec, dict[str, "pd.DataFrame"]]:
    """A local file (or directory of split files) -> ``(spec, frames)`` with text columns + ``label``."""
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
    problem_type, label_names, mapping = _label_encoding(all_labels, problem_type)
    regression = problem_type == "regression"

    def normalise(frame: "pd.DataFrame") -> "pd.DataFrame":
        out = pd.DataFrame({c: frame[c].astype(str) for c in text_columns})
        labels = frame[label_column]
        out[LABEL] = labels.astype(np.float64) if regression else labels.map(mapping).astype(np.int64)
        return out.reset_index(drop=True)

    frames = {split: normalise(frame) for split, frame in raw.items()}
    if "all" in frames:
        everything = frames.pop("all")
        split = assign_splits(np.arange(len(everything)), {"train": 0.8, "validation": 0.1, "test": 0.1})
        frames = {name: everything[split == name].reset_index(drop=True) for name in SPLITS}
        note = "single file: random 80/10/10 split (seed 0)"
    else:
        carved = [s for s in ("validation", "test") if s not in frames]
        for split in carved:
            frames["train"], frames[split] = carve_validation(frames["train"])
        note = f"split files; {' and '.join(carved)} carved from train (seed 0)" if carved else "split files as given"
    if regression:
        metrics: tuple[str, ...] = ("pearson", "spearmanr")
    else:
        metrics = ("accuracy", "f1") if len(label_names) == 2 else ("accuracy", "f1_macro")
    name = path.name.split(".", 1)[0] if path.is_file() else path.name
    spec = TaskSpec(
        name=name or "local", text_columns=text_columns, label_column=label_column,
        num_labels=1 if regression else len(label_names), label_names=label_names, metrics=metrics,
        main_metric=metrics[0], source="local", split_note=note, description=f"local data from {path}",
    )
    return spec, frames
