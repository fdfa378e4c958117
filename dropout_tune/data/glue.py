"""GLUE tasks: from the Hugging Face hub (``nyu-mll/glue``) or from the files of the original GLUE release.

GLUE files are the TSVs of the original release (``SST-2/train.tsv`` with a ``sentence\\tlabel`` header,
header-less ``CoLA/train.tsv``, ``MNLI/dev_matched.tsv``, MRPC's ``msr_paraphrase_*.txt``, ...).
GLUE test labels are hidden, so train is split into train + validation and the dev file is the test.

Example:
    >>> GLUE_FORMATS["mnli"].test_files
    ('dev_matched.tsv',)
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

from .cache import DataUnavailableError
from .splits import carve_validation
from .taskspec import LABEL, TaskSpec

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


def load_hub_frames(spec: TaskSpec) -> dict[str, "pd.DataFrame"]:
    """GLUE from the Hugging Face hub (``nyu-mll/glue``): needs network access or a warm HF cache."""
    import datasets

    try:
        hub = datasets.load_dataset("nyu-mll/glue", spec.name)
    except Exception as err:  # offline, hub down, gated: all mean "use local files instead"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataUnavailableError(
            f"could not load GLUE {spec.name!r} from the Hugging Face hub ({first_line}); without hub access "
            f"pass data_dir=DIR (CLI: --data-dir DIR) holding the GLUE files, e.g. "
            f"DIR/{GLUE_FORMATS[spec.name].directory}/train.tsv and dev.tsv"
        ) from err
    dev_split = "validation_matched" if spec.name == "mnli" else "validation"
    columns = [*spec.text_columns, LABEL]
    train = hub["train"].to_pandas()[columns]
    test = hub[dev_split].to_pandas()[columns]
    train, validation = carve_validation(train)
    return {"train": train, "validation": validation, "test": test}


def load_frames(spec: TaskSpec, *, data_dir: Optional[PathLike] = None
                ) -> tuple[TaskSpec, dict[str, "pd.DataFrame"]]:
    """The ``glue`` source's loader: the files in ``data_dir`` when given, else the hub."""
    return spec, (load_hub_frames(spec) if data_dir is None else load_glue_dir_frames(spec, data_dir))
