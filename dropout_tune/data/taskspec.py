"""`TaskSpec` (what a task is) and the names it is checked against: splits, sources, metric names.

A leaf: it imports nothing from ``dropout_tune``, so the task catalog, the loaders and `dropout_tune.metrics`
can all depend on it without depending on each other.

Example:
    >>> TaskSpec("toy", ("text",), "label", 2, ("neg", "pos"), ("accuracy",), "accuracy", "local").id2label
    {0: 'neg', 1: 'pos'}
    >>> metrics_for(3)
    ('accuracy', 'f1_macro')
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("embedded", "glue", "local")
SPLITS = ("train", "validation", "test")
LABEL = "label"  # the label column's name in every loaded split

# Metric names by the kind of prediction they score (`dropout_tune.metrics` computes each of them).
CLASSIFICATION_METRICS = ("accuracy", "f1", "f1_macro", "matthews_correlation")
REGRESSION_METRICS = ("pearson", "spearmanr")
METRIC_NAMES = CLASSIFICATION_METRICS + REGRESSION_METRICS


def metrics_for(num_labels: int) -> tuple[str, ...]:
    """The default metrics (first = main) for a label count: 1 = regression, 2 = binary, more = multi-class.

    >>> metrics_for(1), metrics_for(2)
    (('pearson', 'spearmanr'), ('accuracy', 'f1'))
    """
    if num_labels == 1:
        return ("pearson", "spearmanr")
    return ("accuracy", "f1") if num_labels == 2 else ("accuracy", "f1_macro")


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its text columns, labels, metrics and where its data comes from.

    ``label_column`` names the label in the *source* data; loaded splits always call it ``label``.
    ``num_labels == 1`` means regression (then ``label_names`` is empty); otherwise class id ``i`` is
    ``label_names[i]``.

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

        >>> TaskSpec("t", ("text",), "label", 2, ("rotten", "fresh"), ("accuracy",), "accuracy", "local").id2label
        {0: 'rotten', 1: 'fresh'}
        """
        return {0: "score"} if self.is_regression else dict(enumerate(self.label_names))
