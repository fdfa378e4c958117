"""Calibration and OOD metrics on predicted class probabilities (pure numpy).

Every metric takes ``probs`` of shape ``(N, C)`` (rows are probability vectors) and integer ``labels`` of shape
``(N,)``. Definitions (the tests check them against independent loop implementations):

* accuracy: mean of ``argmax(probs) == label``.
* NLL: mean of ``-log(max(p[label], EPS))`` (natural log; ``EPS`` keeps a hard zero finite).
* Brier: mean over examples of ``sum_c (p_c - onehot_c)^2`` (the multi-class Brier score, in ``[0, 2]``).
* ECE: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over ``n_bins`` equal-width confidence bins ``(lo, hi]``
  (the first bin also holds confidence 0); confidence is the top probability (Guo et al., 2017).
* MCE: the largest ``|acc(B_b) - conf(B_b)|`` over non-empty bins.
* adaptive ECE: as ECE, but over top-label equal-mass bins whose edges are confidence quantiles: examples sorted
  by confidence and split into ``n_bins`` groups whose sizes differ by at most one, each group's upper edge its
  largest confidence, every example in the first bin whose edge reaches its confidence -- so equal confidences
  always share a bin and the value does not depend on row order (the adaptive binning of Nixon et al., 2019,
  "Measuring Calibration in Deep Learning", applied to the top-label confidence as in ECE).
* OOD AUROC: the probability that an out-of-distribution example scores higher than an in-distribution one,
  ties counting one half (Mann-Whitney U / (n_in * n_out)); higher score = "more OOD".

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    >>> labels = np.array([0, 1, 1, 1])
    >>> m = calibration_metrics(probs, labels, n_bins=10)
    >>> round(m["accuracy"], 3), round(m["ece"], 3)
    (0.75, 0.3)
    >>> ood_auroc([0.1, 0.2], [0.3, 0.15])
    0.75
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

#: Floor on the probability of the true class in the NLL, so one confident mistake cannot make it infinite.
EPS = 1e-12

ArrayLike = Union[np.ndarray, Sequence]


def as_probs_and_labels(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to ``(float64 (N, C), int64 (N,))``; a 1-D ``probs`` is read as P(class 1).

    >>> p, y = as_probs_and_labels([0.75, 0.5], [1, 0])
    >>> p.tolist(), y.tolist()
    ([[0.25, 0.75], [0.5, 0.5]], [1, 0])
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs: expected shape (N, C) with C >= 2 or (N,) for binary, got {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"labels: expected shape ({p.shape[0]},) to match probs, got {y.shape}")
    if p.shape[0] == 0:
        raise ValueError("probs: no examples (N = 0)")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs: every entry must be a finite probability in [0, 1]")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs: rows must sum to 1 (pass softmax outputs, not logits)")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels: expected integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels: class indices must lie in [0, {p.shape[1] - 1}], got [{y.min()}, {y.max()}]")
    return p, y.astype(np.int64)


def _confidence_correct(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = as_probs_and_labels(probs, labels)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of examples whose top class is the label."""
    return float(_confidence_correct(probs, labels)[1].mean())


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood of the labels (natural log, probability floored at :data:`EPS`).

    >>> round(nll([[0.5, 0.5]], [0]), 6)
    0.693147
    """
    p, y = as_probs_and_labels(probs, labels)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], EPS)).mean())


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score: mean of ``sum_c (p_c - onehot_c)^2``.

    >>> brier([[1.0, 0.0]], [1])
    2.0
    """
    p, y = as_probs_and_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram (``count == 0`` bins have accuracy/confidence 0)."""

    edges: np.ndarray  # (n_bins + 1,) for equal-width bins; quantile edges for equal-mass bins
    count: np.ndarray  # (n_bins,)
    accuracy: np.ndarray  # (n_bins,)
    confidence: np.ndarray  # (n_bins,)

    @property
    def gap(self) -> np.ndarray:
        """``|accuracy - confidence|`` per bin."""
        return np.abs(self.accuracy - self.confidence)

    def expected_error(self) -> float:
        """Count-weighted mean gap: the (adaptive) ECE."""
        return float((self.count * self.gap).sum() / self.count.sum())

    def max_error(self) -> float:
        """Largest gap over non-empty bins: the MCE."""
        return float(self.gap[self.count > 0].max())

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("edges", "count", "accuracy", "confidence")}


def _validate_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    return int(n_bins)


def _bin_stats(groups: list[np.ndarray], confidence: np.ndarray, correct: np.ndarray, edges: np.ndarray):
    count = np.array([len(g) for g in groups], dtype=np.float64)
    acc = np.array([correct[g].mean() if len(g) else 0.0 for g in groups])
    conf = np.array([confidence[g].mean() if len(g) else 0.0 for g in groups])
    return ReliabilityBins(edges=edges, count=count, accuracy=acc, confidence=conf)


def reliability_bins(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> ReliabilityBins:
    """Equal-width confidence bins ``(i/n, (i+1)/n]`` (confidence 0 goes to the first bin).

    >>> b = reliability_bins([[0.9, 0.1], [0.2, 0.8]], [0, 0], n_bins=5)
    >>> b.count.tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0]
    """
    n_bins = _validate_n_bins(n_bins)
    confidence, correct = _confidence_correct(probs, labels)
    edges = np.arange(n_bins + 1) / n_bins  # exactly b / n, as the definition reads
    # Right-closed bins: index = ceil(conf * n) - 1, clipped so conf == 0 lands in bin 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    groups = [np.flatnonzero(index == b) for b in range(n_bins)]
    return _bin_stats(groups, confidence, correct, edges)


def adaptive_bins(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> ReliabilityBins:
    """Top-label equal-mass bins (Nixon et al., 2019, "Measuring Calibration in Deep Learning"): the sorted
    confidences split into ``n_bins`` groups whose sizes differ by at most one give the upper edges (each group's
    largest confidence); an example goes to the first bin whose edge reaches its confidence. Equal confidences share
    a bin (a tie across an edge goes to the lower bin, leaving a later one smaller or empty), so the bins depend on
    the confidences only, never on row order.

    >>> adaptive_bins([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.9, 0.1]], [0, 1, 0, 0], n_bins=2).count.tolist()
    [3.0, 1.0]
    """
    n_bins = _validate_n_bins(n_bins)
    confidence, correct = _confidence_correct(probs, labels)
    order = np.argsort(confidence, kind="stable")
    upper = np.array([confidence[g[-1]] for g in np.array_split(order, min(n_bins, len(order)))])
    index = np.searchsorted(upper, confidence, side="left")
    # members in sorted-confidence order, so every sum runs over the same sequence of values whatever the row order
    groups = [order[index[order] == b] for b in range(len(upper))]
    return _bin_stats(groups, confidence, correct, np.r_[0.0, upper])


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error over equal-width bins."""
    return reliability_bins(probs, labels, n_bins).expected_error()


def mce(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Maximum calibration error over non-empty equal-width bins."""
    return reliability_bins(probs, labels, n_bins).max_error()


def adaptive_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error over top-label equal-mass bins (see :func:`adaptive_bins`)."""
    return adaptive_bins(probs, labels, n_bins).expected_error()


def calibration_metrics(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """All scalar metrics at once: ``n, accuracy, nll, brier, ece, mce, adaptive_ece``.

    >>> sorted(calibration_metrics([[0.7, 0.3]], [0]))
    ['accuracy', 'adaptive_ece', 'brier', 'ece', 'mce', 'n', 'nll']
    """
    p, y = as_probs_and_labels(probs, labels)
    bins = reliability_bins(p, y, n_bins)
    return {
        "n": int(len(y)),
        "accuracy": accuracy(p, y),
        "nll": nll(p, y),
        "brier": brier(p, y),
        "ece": bins.expected_error(),
        "mce": bins.max_error(),
        "adaptive_ece": adaptive_ece(p, y, n_bins),
    }


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (as ``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[run]
    return ranks


def ood_auroc(in_scores: ArrayLike, out_scores: ArrayLike) -> float:
    """AUROC of telling out-of-distribution (positive) from in-distribution examples by a score where higher means
    "more OOD" (e.g. mutual information, predictive entropy). Ties count one half.

    >>> ood_auroc([0.0, 0.0], [0.0, 1.0])
    0.75
    """
    s_in = np.asarray(in_scores, dtype=np.float64).ravel()
    s_out = np.asarray(out_scores, dtype=np.float64).ravel()
    for name, s in (("in_scores", s_in), ("out_scores", s_out)):
        if s.size == 0:
            raise ValueError(f"{name}: no scores")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name}: every score must be finite")
    ranks = _average_ranks(np.concatenate([s_in, s_out]))
    n_in, n_out = len(s_in), len(s_out)
    u_out = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u_out / (n_in * n_out))


def reliability_diagram(
    probs: ArrayLike,
    labels: ArrayLike,
    path: Union[str, Path],
    title: str = "MC dropout",
    other: Optional[ArrayLike] = None,
    other_title: str = "deterministic",
    n_bins: int = 15,
) -> Path:
    """Write a reliability diagram PNG: accuracy per confidence bin against the diagonal, with ECE in the title.
    With ``other`` (probabilities of a second predictor on the same labels, e.g. the deterministic model) the two
    are drawn side by side, ``other`` on the left. Returns the path written.
    """
    from matplotlib.figure import Figure  # the object API: the user's pyplot backend and state stay untouched

    panels = [(other_title, other)] if other is not None else []
    panels.append((title, probs))
    fig = Figure(figsize=(4.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, p) in zip(axes[0], panels):
        bins = reliability_bins(p, labels, n_bins)
        width = bins.edges[1:] - bins.edges[:-1]
        filled = bins.count > 0
        ax.bar(bins.edges[:-1][filled], bins.accuracy[filled], width=width[filled], align="edge",
               edgecolor="black", color="tab:blue", label="accuracy")
        ax.bar(bins.edges[:-1][filled], (bins.confidence - bins.accuracy)[filled], bottom=bins.accuracy[filled],
               width=width[filled], align="edge", color="tab:red", alpha=0.3, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
               title=f"{name}\nECE {bins.expected_error():.4f}  acc {accuracy(p, labels):.4f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    from .figures import save_figure

    save_figure(fig, path, dpi=100)
    return Path(path)
