"""Per-method metrics on the test split and their paired bootstrap differences to ``deterministic``.

Classification metrics are the project's (``dropout_tune.calibration``: accuracy, NLL, Brier, ECE, adaptive ECE)
plus selective prediction and OOD detection:

* risk-coverage: examples ranked by confidence (the top probability), most confident first; the risk at coverage
  ``k/N`` is the error rate of the ``k`` most confident examples. Equal confidences are ranked at random, and the
  risk is its expectation: within a group of ``g`` tied examples holding ``e`` errors, the first ``j`` hold
  ``j * e / g`` errors in expectation, so the curve depends on the confidences only, never on row order.
* AURC: the mean risk over the ``N`` coverages ``1/N .. 1`` (Geifman et al., 2019).
* OOD AUROC: scikit-learn's ``roc_auc_score`` of telling OOD examples (positive) from test examples by the
  predictive entropy of the method's probabilities.

Regression metrics: MSE and the Gaussian NLL ``0.5 * (log(2 pi var) + (y - mean)^2 / var)``.

Example:
    >>> import numpy as np
    >>> coverage, risk = risk_coverage(np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]), np.array([0, 0, 1]))
    >>> coverage.round(4).tolist(), risk.round(4).tolist()
    ([0.3333, 0.6667, 1.0], [0.0, 0.25, 0.3333])
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import numpy as np

from ..calibration import as_probs_and_labels, calibration_metrics
from ..mc import entropy

#: Classification metrics per method, in table order; lower is better for all but accuracy and OOD AUROC.
CLASSIFICATION_METRICS = ("accuracy", "nll", "brier", "ece", "adaptive_ece", "aurc")
REGRESSION_METRICS = ("mse", "nll")
HIGHER_IS_BETTER = frozenset({"accuracy", "ood_auroc"})


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, risk)`` of selective prediction by max-probability confidence, ties in expectation (see the
    module docstring); both of shape ``(N,)``."""
    p, y = as_probs_and_labels(probs, labels)
    confidence = p.max(axis=1)
    wrong = (p.argmax(axis=1) != y).astype(np.float64)
    order = np.argsort(-confidence, kind="stable")
    conf, err = confidence[order], wrong[order]
    n = len(conf)
    starts = np.flatnonzero(np.r_[True, conf[1:] != conf[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    group_errors = np.add.reduceat(err, starts)
    errors_before = np.r_[0.0, np.cumsum(group_errors)[:-1]]
    position_in_group = np.arange(n) - starts[group] + 1
    expected_errors = errors_before[group] + position_in_group * group_errors[group] / sizes[group]
    k = np.arange(1, n + 1)
    return k / n, expected_errors / k


def aurc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Area under the risk-coverage curve: the mean risk over the coverages ``1/N .. 1``."""
    return float(risk_coverage(probs, labels)[1].mean())


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of ``probs``: the project's ``mc.entropy``."""
    import torch

    return entropy(torch.as_tensor(np.asarray(probs, dtype=np.float64))).numpy()


def ood_auroc(test_probs: np.ndarray, ood_probs: np.ndarray) -> float:
    """AUROC of telling OOD examples from test examples by predictive entropy (higher = more OOD)."""
    from sklearn.metrics import roc_auc_score

    scores = np.r_[predictive_entropy(test_probs), predictive_entropy(ood_probs)]
    is_ood = np.r_[np.zeros(len(test_probs)), np.ones(len(ood_probs))]
    return float(roc_auc_score(is_ood, scores))


def classification_scores(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15,
                          ood_probs: Optional[np.ndarray] = None) -> dict[str, float]:
    """``accuracy, nll, brier, ece, adaptive_ece`` (``calibration_metrics``), ``aurc`` and with ``ood_probs``
    ``ood_auroc``."""
    full = calibration_metrics(probs, labels, n_bins)
    out = {name: full[name] for name in CLASSIFICATION_METRICS if name in full}
    out["aurc"] = aurc(probs, labels)
    if ood_probs is not None:
        out["ood_auroc"] = ood_auroc(probs, ood_probs)
    return out


def gaussian_nll(mean: np.ndarray, variance: np.ndarray, target: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood (nats) of ``target`` under ``N(mean, variance)``."""
    mean, variance, target = (np.asarray(a, dtype=np.float64).ravel() for a in (mean, variance, target))
    if np.any(variance <= 0):
        raise ValueError("variance: must be positive everywhere")
    return float(np.mean(0.5 * (np.log(2 * np.pi * variance) + (target - mean) ** 2 / variance)))


def regression_scores(mean: np.ndarray, variance: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``mse`` and Gaussian ``nll``."""
    mean, target = np.asarray(mean, dtype=np.float64).ravel(), np.asarray(target, dtype=np.float64).ravel()
    return {"mse": float(np.mean((mean - target) ** 2)), "nll": gaussian_nll(mean, variance, target)}


def bootstrap_indices(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(resamples, n)`` row indices drawn with replacement by numpy's seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_draws(score: Callable[..., Mapping[str, float]], indices: np.ndarray,
                    ood_indices: Optional[np.ndarray] = None, progress: bool = False,
                    desc: str = "bootstrap") -> dict[str, np.ndarray]:
    """``{metric: (B,) values}`` of ``score(rows)`` (``score(rows, ood_rows)`` with ``ood_indices``) over the
    resampled rows; the same rows for two predictors make their differences paired over examples."""
    from tqdm.auto import tqdm

    draws: dict[str, list[float]] = {}
    for b in tqdm(range(len(indices)), desc=desc, unit="resample", disable=None if progress else True, leave=False):
        extra = (ood_indices[b],) if ood_indices is not None else ()
        for name, value in score(indices[b], *extra).items():
            draws.setdefault(name, []).append(value)
    return {name: np.asarray(v, dtype=np.float64) for name, v in draws.items()}


def interval(differences: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Percentile interval ``{"low", "high"}`` of bootstrap draws."""
    tail = 100 * (1 - level) / 2
    return {"low": float(np.percentile(differences, tail)), "high": float(np.percentile(differences, 100 - tail))}


def verdict(metric: str, interval: Mapping[str, float]) -> str:
    """``better`` / ``worse`` than the baseline when the interval of the difference excludes 0, else
    ``within noise``."""
    low, high = interval["low"], interval["high"]
    if low <= 0 <= high:
        return "within noise"
    improved = (low > 0) if metric in HIGHER_IS_BETTER else (high < 0)
    return "better" if improved else "worse"
