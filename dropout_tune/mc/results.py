"""What ``mc_predict`` returns: per-example MC-dropout predictions, one type per problem.

Every result has ``mode``, ``samples``, ``stochastic_layers``, ``spec`` (the spec given, as text), ``rates`` (role ->
the rate its stochastic sites dropped with; 0.0 for a role not sampled), ``labels`` and, with ``keep_samples``,
``sample_outputs``; ``len()``, ``scores(name)`` and ``to_dict()``. Arrays are numpy, one row per example, in data
order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np


@dataclass(kw_only=True)
class MCPrediction:
    """The fields and methods every MC-dropout result has."""

    task: ClassVar[str]
    #: Uncertainty scores ``scores()`` accepts, the default first.
    SCORES: ClassVar[tuple[str, ...]]

    mode: str
    samples: int
    stochastic_layers: Optional[int] = None
    spec: Optional[str] = None
    rates: dict[str, float] = field(default_factory=dict)
    labels: Optional[np.ndarray] = None
    sample_outputs: Optional[np.ndarray] = None  # (N, T, C) probabilities or (N, T) values, with keep_samples

    def __len__(self) -> int:
        return len(self._first())

    def _first(self) -> np.ndarray:
        raise NotImplementedError

    def scores(self, name: Optional[str] = None) -> np.ndarray:
        """An uncertainty score per example (higher = more uncertain), e.g. for OOD detection."""
        name = name or self.SCORES[0]
        value = getattr(self, name, None) if name in self.SCORES else None
        if value is None:
            raise ValueError(f"score {name!r} is not available for {self.task}; valid: "
                             f"{', '.join(v for v in self.SCORES if getattr(self, v) is not None)}")
        return value

    def to_dict(self, n_bins: int = 15) -> dict:
        """A JSON-ready summary: the settings, the rates sampled, means of the uncertainty scores, and with labels
        the metrics of the MC prediction and of the deterministic one side by side."""
        return {"problem": self.task, "mode": self.mode, "samples": self.samples,
                "stochastic_layers": self.stochastic_layers, "spec": self.spec, "rates": dict(self.rates),
                "n": len(self), **self._summary(n_bins)}

    def _summary(self, n_bins: int) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(kw_only=True)
class ClassificationPrediction(MCPrediction):
    """MC-dropout class probabilities. ``mean_probs`` (N, C); ``std`` (N, C, population std of each class
    probability over the T samples); ``predictive_entropy`` H[E_t p_t]; ``expected_entropy`` E_t H[p_t];
    ``mutual_information`` (their difference: BALD); ``variation_ratio`` (1 - share of samples voting for the modal
    class); ``prediction``; and from the eval-mode pass ``deterministic_probs`` / ``deterministic_prediction`` /
    ``deterministic_entropy``. Entropies are in nats."""

    task: ClassVar[str] = "classification"
    SCORES: ClassVar[tuple[str, ...]] = ("mutual_information", "predictive_entropy", "expected_entropy",
                                         "variation_ratio", "deterministic_entropy")

    mean_probs: np.ndarray
    std: np.ndarray
    predictive_entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    variation_ratio: np.ndarray
    prediction: np.ndarray
    deterministic_probs: Optional[np.ndarray] = None
    deterministic_prediction: Optional[np.ndarray] = None
    deterministic_entropy: Optional[np.ndarray] = None

    def _first(self) -> np.ndarray:
        return self.mean_probs

    def _summary(self, n_bins: int) -> dict[str, Any]:
        from ..calibration import calibration_metrics

        out: dict[str, Any] = {f"mean_{name}": float(getattr(self, name).mean()) for name in
                               ("predictive_entropy", "expected_entropy", "mutual_information", "variation_ratio")}
        if self.deterministic_prediction is not None:
            out["agreement_with_deterministic"] = float((self.prediction == self.deterministic_prediction).mean())
        if self.labels is not None:
            out["mc"] = calibration_metrics(self.mean_probs, self.labels, n_bins)
            if self.deterministic_probs is not None:
                out["deterministic"] = calibration_metrics(self.deterministic_probs, self.labels, n_bins)
        return out


@dataclass(kw_only=True)
class RegressionPrediction(MCPrediction):
    """MC-dropout regression outputs: ``mean``, ``variance`` and ``std`` over the T samples (population), and the
    eval-mode ``deterministic_mean``."""

    task: ClassVar[str] = "regression"
    SCORES: ClassVar[tuple[str, ...]] = ("variance",)

    mean: np.ndarray
    variance: np.ndarray
    std: np.ndarray
    deterministic_mean: Optional[np.ndarray] = None

    def _first(self) -> np.ndarray:
        return self.mean

    def _summary(self, n_bins: int) -> dict[str, Any]:
        out: dict[str, Any] = {"mean_variance": float(self.variance.mean())}
        if self.labels is not None:
            target = self.labels.astype(np.float64).reshape(self.mean.shape)
            out["mc"] = {"mse": float(((self.mean - target) ** 2).mean())}
            if self.deterministic_mean is not None:
                out["deterministic"] = {"mse": float(((self.deterministic_mean - target) ** 2).mean())}
        return out
