"""The post-hoc methods: temperature scaling, ensembles, a last-layer Laplace approximation, and the noise variance
that turns a regression mean into a Gaussian.

* ``fit_temperature(logits, labels)``: the ``T`` minimising the project's NLL (``calibration.nll``) of
  ``softmax(logits / T)``, found by scipy's bounded ``minimize_scalar`` on ``log T`` in ``[-5, 5]``. The caller passes
  the validation split; nothing else enters the fit.
* ``ensemble_probs``: the mean of the members' probabilities.
* ``laplace_last_layer``: laplace-torch's ``Laplace(head, "classification", subset_of_weights="last_layer",
  hessian_structure="full")`` over the final linear layer of the classification head, fitted on that layer's input
  features of the training split, one (scalar) prior precision by marginal likelihood, GLM predictive with the
  probit link.
* ``fit_noise_variance``: for regression, the homoscedastic noise variance ``s2`` minimising the validation Gaussian
  NLL of ``N(mean, v + s2)`` (``v``: the method's own variance, 0 for a deterministic prediction).

Example:
    >>> import numpy as np
    >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> t = fit_temperature(logits, np.array([0, 1, 1, 0]))  # half wrong at confidence 0.98: flatten
    >>> bool(t > 10)
    True
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence

import numpy as np

from ..calibration import nll

#: Search interval of ``log T``.
LOG_T_BOUNDS = (-5.0, 5.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log(probs)``, floored so a hard zero stays finite: logits whose softmax is ``probs``."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-300))


def temperature_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """The project's NLL of ``softmax(logits / temperature)``."""
    return nll(softmax(logits, temperature), labels)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` on ``(logits, labels)``."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) == 0 or len(labels) != len(logits):
        raise ValueError(f"fit_temperature: expected logits (N, C) with N >= 1 and N labels, got {logits.shape} "
                         f"and {labels.shape}")
    result = minimize_scalar(lambda log_t: temperature_nll(logits, labels, float(np.exp(log_t))),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def ensemble_probs(members: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the members' ``(N, C)`` probabilities."""
    if not members:
        raise ValueError("ensemble: no members")
    return np.mean(np.stack([np.asarray(m, dtype=np.float64) for m in members]), axis=0)


def fit_noise_variance(mean: np.ndarray, target: np.ndarray, variance: Optional[np.ndarray] = None) -> float:
    """The noise variance ``s2`` minimising the Gaussian NLL of ``target`` under ``N(mean, variance + s2)``."""
    from scipy.optimize import minimize_scalar

    from .scores import gaussian_nll

    mean, target = np.asarray(mean, dtype=np.float64).ravel(), np.asarray(target, dtype=np.float64).ravel()
    v = np.zeros_like(mean) if variance is None else np.asarray(variance, dtype=np.float64).ravel()
    mse = float(np.mean((mean - target) ** 2)) or 1e-12
    if variance is None:
        return mse  # the closed form
    bounds = (np.log(mse) - 12.0, np.log(mse) + 2.0)
    result = minimize_scalar(lambda log_s: gaussian_nll(mean, v + np.exp(log_s), target), bounds=bounds,
                             method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


# ---- last-layer Laplace ----------------------------------------------------------------------------------------------


def import_laplace():
    """laplace-torch's ``Laplace``, or a one-line ValueError saying how to install it."""
    try:
        from laplace import Laplace
    except Exception as err:  # ImportError, or a broken torchvision beside it (RuntimeError at import)
        raise ValueError(f"method laplace: needs laplace-torch ({type(err).__name__}: {str(err).splitlines()[0]}); "
                         f"install it with scripts/setup.sh or pip install 'dropout-tune[uncertainty]', or leave "
                         f"laplace out of --methods") from None
    return Laplace


def laplace_last_layer(head, train_features: np.ndarray, train_labels: np.ndarray,
                       features: Sequence[np.ndarray], batch_size: int = 256) -> tuple[list[np.ndarray], float]:
    """Last-layer Laplace over ``head`` (the final ``nn.Linear`` of a classification head), fitted on its input
    ``train_features`` and ``train_labels``; returns (the GLM-probit predictive probabilities of each array in
    ``features``, the prior precision found by marginal likelihood)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    Laplace = import_laplace()
    # laplace-torch finds the last layer of a model of more than one module: the features pass an identity first
    model = torch.nn.Sequential(torch.nn.Identity(), copy.deepcopy(head).float().cpu()).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    x = torch.as_tensor(np.asarray(train_features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    la = Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure="full",
                 last_layer_name="1")
    la.fit(loader)
    with warnings.catch_warnings():  # laplace-torch reminds, always, that the link is probit: it is
        warnings.filterwarnings("ignore", message="By default `link_approx` is `probit`")
        la.optimize_prior_precision(pred_type="glm", method="marglik", prior_structure="scalar",
                                    link_approx="probit")
    out = []
    with torch.no_grad():
        for f in features:
            f = torch.as_tensor(np.asarray(f), dtype=torch.float32)
            probs = torch.cat([la(f[i:i + batch_size], pred_type="glm", link_approx="probit")
                               for i in range(0, len(f), batch_size)])
            out.append(probs.double().numpy())
    prior = float(torch.as_tensor(la.prior_precision).mean())
    return [p / p.sum(axis=1, keepdims=True) for p in out], prior
