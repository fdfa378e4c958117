"""Task metrics computed offline with scikit-learn and scipy (no ``evaluate`` hub downloads).

``compute_task_metrics(task, predictions_or_logits, labels)`` returns every metric the task lists, plus
``combined_score`` (their mean, as in Hugging Face's ``run_glue.py``) when it lists more than one.
``make_compute_metrics(task)`` wraps it for ``transformers.Trainer(compute_metrics=...)``.

Example:
    >>> compute_task_metrics("mrpc", [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 0, 0])
    {'f1': 0.6666666666666666, 'accuracy': 0.6666666666666666, 'combined_score': 0.6666666666666666}
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Union

import numpy as np

from .data.catalog import get_task
from .data.taskspec import CLASSIFICATION_METRICS, METRIC_NAMES, REGRESSION_METRICS, TaskSpec

__all__ = [
    "CLASSIFICATION_METRICS", "METRIC_FUNCTIONS", "METRIC_NAMES", "REGRESSION_METRICS", "compute_task_metrics",
    "make_compute_metrics", "predictions_from_outputs",
]


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, predictions))


def _f1_binary(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    # zero_division=0.0 is sklearn's default value, minus the warning when nothing is predicted positive.
    return float(f1_score(labels, predictions, average="binary", pos_label=1, zero_division=0.0))


def _f1_macro(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="macro", zero_division=0.0))


def _matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, predictions))


def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
        from scipy import stats

        function = stats.pearsonr if kind == "pearson" else stats.spearmanr
        with warnings.catch_warnings():
            # A constant prediction (common early in training) has no correlation: report nan quietly.
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            return float(function(predictions, labels)[0])

    return correlation


METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1_binary,
    "f1_macro": _f1_macro,
    "matthews_correlation": _matthews,
    "pearson": _correlation("pearson"),
    "spearmanr": _correlation("spearmanr"),
}


def predictions_from_outputs(task: Union[TaskSpec, str], predictions_or_logits: Any) -> np.ndarray:
    """Class ids (argmax over logits) for classification, a flat float vector for regression.

    >>> predictions_from_outputs("sst2", [[2.0, -1.0], [0.0, 3.0]]).tolist()
    [0, 1]
    >>> predictions_from_outputs("stsb", [[4.5], [1.0]]).tolist()
    [4.5, 1.0]
    """
    task = get_task(task)
    outputs = np.asarray(predictions_or_logits)
    if task.is_regression:
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.ndim != 1:
            raise ValueError(
                f"regression task {task.name!r} expects predictions of shape (n,) or (n, 1), got {outputs.shape}"
            )
        return outputs.astype(np.float64)
    if outputs.ndim == 2:
        if outputs.shape[1] != task.num_labels:
            raise ValueError(
                f"task {task.name!r} has {task.num_labels} labels but the logits have {outputs.shape[1]} columns"
            )
        return outputs.argmax(axis=-1)
    if outputs.ndim != 1:
        raise ValueError(
            f"task {task.name!r} expects logits (n, {task.num_labels}) or class ids (n,), got {outputs.shape}"
        )
    if outputs.dtype.kind == "f" and not np.all(np.mod(outputs, 1) == 0):
        raise ValueError(f"task {task.name!r} expects integer class ids, got non-integral values")
    return outputs.astype(np.int64)


def compute_task_metrics(task: Union[TaskSpec, str], predictions_or_logits: Any, labels: Any) -> dict[str, float]:
    """The task's metrics (and ``combined_score`` when there are several) as plain floats.

    ``predictions_or_logits``: logits ``(n, num_labels)`` or class ids ``(n,)`` for classification,
    ``(n,)`` or ``(n, 1)`` for regression.

    >>> compute_task_metrics("stsb", [1.0, 2.0, 3.5], [1.2, 2.1, 2.9])["spearmanr"]
    1.0
    """
    task = get_task(task)
    predictions = predictions_from_outputs(task, predictions_or_logits)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != predictions.shape:
        raise ValueError(f"labels have shape {labels.shape} but predictions have shape {predictions.shape}")
    if len(labels) == 0:
        raise ValueError("cannot compute metrics on zero examples")
    labels = labels.astype(np.float64 if task.is_regression else np.int64)
    results = {name: METRIC_FUNCTIONS[name](predictions, labels) for name in task.metrics}
    if len(results) > 1:
        results["combined_score"] = float(np.mean(list(results.values())))
    return results


def make_compute_metrics(task: Union[TaskSpec, str]) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` function for ``transformers.Trainer`` (takes an ``EvalPrediction``).

    >>> from transformers import EvalPrediction
    >>> fn = make_compute_metrics("cola")
    >>> fn(EvalPrediction(predictions=np.array([[1.0, 0.0], [0.0, 1.0]]), label_ids=np.array([0, 1])))
    {'matthews_correlation': 1.0}
    """
    task = get_task(task)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        # Models that also return hidden states / attentions give a tuple whose first item is the logits.
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        if labels is None:
            raise ValueError("EvalPrediction has no label_ids: the evaluation dataset needs a 'label' column")
        return compute_task_metrics(task, predictions, labels)

    return compute_metrics
