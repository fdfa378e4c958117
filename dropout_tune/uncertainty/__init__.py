"""Uncertainty methods side by side on a fine-tuned run: deterministic, temperature scaling, MC dropout, MC dropout
with a temperature, a deep ensemble of seed runs and a last-layer Laplace approximation; accuracy, NLL, Brier,
(adaptive) ECE, selective prediction (AURC) and OOD AUROC, each method's difference to deterministic with a paired
bootstrap interval. See ``docs/uncertainty.md``.

Modules: ``scores`` (metrics, risk-coverage, bootstrap), ``methods`` (temperature, ensemble, Laplace, noise
variance), ``runs`` (run directories, deterministic passes), ``report`` (output files), ``evaluate``
(``evaluate_uncertainty``, what the command runs).

Example (Python; the command is ``dropout-tune uncertainty RUN_DIR [RUN_DIR ...] -o OUT``):
    >>> from dropout_tune.uncertainty import evaluate_uncertainty  # doctest: +SKIP
    >>> result = evaluate_uncertainty(["runs/rt-seed1", "runs/rt-seed2"], "out", samples=20)  # doctest: +SKIP
    >>> result["methods"]["temperature"]["verdict"]  # doctest: +SKIP
    {'nll': 'better', 'ece': 'within noise'}
"""

from __future__ import annotations

from .evaluate import METHODS, REGRESSION_METHODS, evaluate_uncertainty
from .methods import ensemble_probs, fit_temperature, laplace_last_layer
from .scores import aurc, classification_scores, risk_coverage

__all__ = ["METHODS", "REGRESSION_METHODS", "aurc", "classification_scores", "ensemble_probs",
           "evaluate_uncertainty", "fit_temperature", "laplace_last_layer", "risk_coverage"]
