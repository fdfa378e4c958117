"""Task metrics equal scikit-learn / scipy (to 1e-12), match hand-computed values, and plug into Trainer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from transformers import EvalPrediction

from dropout_tune.data import TaskSpec, get_task
from dropout_tune.metrics import compute_task_metrics, make_compute_metrics, predictions_from_outputs

TOL = 1e-12


def _reference(name, predictions, labels):
    return {
        "accuracy": lambda: skm.accuracy_score(labels, predictions),
        "f1": lambda: skm.f1_score(labels, predictions),
        "f1_macro": lambda: skm.f1_score(labels, predictions, average="macro"),
        "matthews_correlation": lambda: skm.matthews_corrcoef(labels, predictions),
        "pearson": lambda: stats.pearsonr(predictions, labels)[0],
        "spearmanr": lambda: stats.spearmanr(predictions, labels)[0],
    }[name]()


@pytest.mark.parametrize("task_name", ["cola", "sst2", "mrpc", "qqp", "mnli", "rotten_tomatoes", "snli"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_equal_sklearn(task_name, seed):
    task = get_task(task_name)
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(257, task.num_labels))
    labels = rng.integers(0, task.num_labels, size=257)
    result = compute_task_metrics(task, logits, labels)
    predictions = logits.argmax(axis=1)
    for name in task.metrics:
        assert abs(result[name] - _reference(name, predictions, labels)) <= TOL, name
    if len(task.metrics) > 1:
        assert abs(result["combined_score"] - np.mean([result[m] for m in task.metrics])) <= TOL
    else:
        assert set(result) == set(task.metrics)


@pytest.mark.parametrize("task_name", ["stsb", "vader_movies"])
@pytest.mark.parametrize("shape", ["flat", "column"])
def test_regression_metrics_equal_scipy(task_name, shape):
    rng = np.random.default_rng(3)
    labels = rng.uniform(0, 5, size=300)
    predictions = labels + rng.normal(scale=1.0, size=300)
    outputs = predictions[:, None] if shape == "column" else predictions
    result = compute_task_metrics(task_name, outputs, labels)
    assert abs(result["pearson"] - stats.pearsonr(predictions, labels)[0]) <= TOL
    assert abs(result["spearmanr"] - stats.spearmanr(predictions, labels)[0]) <= TOL
    assert 0.5 < result["pearson"] < 1  # really correlated, not a degenerate value
    assert abs(result["combined_score"] - (result["pearson"] + result["spearmanr"]) / 2) <= TOL


def test_hand_computed_values():
    # confusion matrix tp=3, tn=4, fp=1, fn=2
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    predictions = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    tp, tn, fp, fn = 3, 4, 1, 2
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    mrpc = compute_task_metrics("mrpc", predictions, labels)
    assert mrpc["accuracy"] == pytest.approx(0.7, abs=TOL)
    assert mrpc["f1"] == pytest.approx(2 * precision * recall / (precision + recall), abs=TOL)
    assert compute_task_metrics("cola", predictions, labels)["matthews_correlation"] == pytest.approx(mcc, abs=TOL)

    x = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    pearson = np.corrcoef(x, y)[0, 1]
    ranks_x, ranks_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    spearman = np.corrcoef(ranks_x, ranks_y)[0, 1]
    result = compute_task_metrics("stsb", x, y)
    assert result["pearson"] == pytest.approx(pearson, abs=TOL)
    assert result["spearmanr"] == pytest.approx(spearman, abs=TOL) and spearman == pytest.approx(0.8)


def test_multiclass_macro_f1_for_local_tasks():
    task = TaskSpec("local3", ("text",), "label", 3, ("a", "b", "c"), ("accuracy", "f1_macro"), "accuracy", "local")
    rng = np.random.default_rng(5)
    labels, predictions = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    result = compute_task_metrics(task, predictions, labels)
    assert abs(result["f1_macro"] - skm.f1_score(labels, predictions, average="macro")) <= TOL


def test_degenerate_predictions_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant = compute_task_metrics("stsb", np.full(5, 2.0), np.arange(5.0))
        no_positive = compute_task_metrics("mrpc", np.zeros(4, dtype=int), np.array([0, 1, 1, 0]))
    assert np.isnan(constant["pearson"]) and np.isnan(constant["spearmanr"])
    assert no_positive["f1"] == 0.0 and no_positive["accuracy"] == 0.5


def test_make_compute_metrics_takes_eval_predictions():
    classify = make_compute_metrics("rotten_tomatoes")
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.1, 0.2]])
    labels = np.array([0, 1, 1, 1])
    assert classify(EvalPrediction(predictions=logits, label_ids=labels))["accuracy"] == 0.75
    hidden = np.zeros((4, 3, 8))
    with_extras = classify(EvalPrediction(predictions=(logits, hidden), label_ids=labels))
    assert with_extras == compute_task_metrics("rotten_tomatoes", logits, labels)

    regress = make_compute_metrics(get_task("stsb"))
    scores = regress(EvalPrediction(predictions=np.array([[0.5], [1.5], [3.0]], dtype=np.float32),
                                    label_ids=np.array([1.0, 2.0, 2.5], dtype=np.float32)))
    assert scores["spearmanr"] == pytest.approx(1.0) and set(scores) == {"pearson", "spearmanr", "combined_score"}
    with pytest.raises(ValueError, match="label_ids"):
        regress(EvalPrediction(predictions=np.zeros((3, 1)), label_ids=None))


@pytest.mark.parametrize("task,outputs,labels,needle", [
    ("sst2", np.zeros((4, 3)), np.zeros(4), "2 labels but the logits have 3 columns"),
    ("stsb", np.zeros((4, 2)), np.zeros(4), r"shape \(n,\) or \(n, 1\)"),
    ("sst2", np.zeros(4), np.zeros(5), "labels have shape"),
    ("sst2", np.array([0.5, 1.0]), np.zeros(2), "integer class ids"),
    ("sst2", np.zeros((0, 2)), np.zeros(0), "zero examples"),
])
def test_bad_shapes_are_refused(task, outputs, labels, needle):
    with pytest.raises(ValueError, match=needle):
        compute_task_metrics(task, outputs, labels)


def test_predictions_from_outputs_accepts_class_ids():
    assert predictions_from_outputs("mnli", np.array([2, 0, 1])).tolist() == [2, 0, 1]


def test_every_metric_name_a_task_may_list_has_one_function():
    from dropout_tune.data.taskspec import METRIC_NAMES
    from dropout_tune.metrics import METRIC_FUNCTIONS

    assert sorted(METRIC_FUNCTIONS) == sorted(METRIC_NAMES)
