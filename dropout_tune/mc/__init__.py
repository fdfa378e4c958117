"""Monte Carlo dropout (Gal & Ghahramani, 2016) over every dropout site of a transformers model.

``mc_dropout(model)`` makes dropout stochastic at inference in every form transformers keeps it (``nn.Dropout``
modules, ``.p`` read by attention code, float attributes such as ``LlamaAttention.attention_dropout``), while the rest
of the model behaves as in eval mode. ``mc_predict`` averages ``T`` stochastic passes and returns per-example
uncertainty. See ``docs/mc_dropout.md`` for what each mode computes.

Modules: ``switch`` (which sites drop: ``mc_dropout``), ``trunk`` (run the bottom layers once), ``inputs`` (batches),
``stats`` and ``results`` (what a prediction holds), ``predict`` (``mc_predict``).

Example:
    >>> import torch
    >>> from dropout_tune.testing import tiny_model, tiny_inputs
    >>> model = tiny_model("bert").eval()
    >>> inputs = tiny_inputs(model)
    >>> with mc_dropout(model) as sites, torch.no_grad():
    ...     a, b = model(**inputs).logits, model(**inputs).logits
    >>> bool((a != b).any()), len(sites), model.training
    (True, 8, False)
    >>> pred = mc_predict(model, inputs, samples=4, seed=0)
    >>> pred.mean_probs.shape, pred.mutual_information.shape
    ((2, 3), (2,))
"""

from __future__ import annotations

from typing import Any

from .inputs import LABEL_KEYS
from .predict import DEFAULT_BUDGET_MB, MODES, mc_predict, rows_for_budget, validate_options
from .results import ClassificationPrediction, MCPrediction, RegressionPrediction
from .stats import entropy
from .switch import StochasticSwitch, mc_dropout
from .trunk import trunk_families, trunk_layers

__all__ = [
    "DEFAULT_BUDGET_MB",
    "LABEL_KEYS",
    "MODES",
    "trunk_families",
    "ClassificationPrediction",
    "MCPrediction",
    "RegressionPrediction",
    "StochasticSwitch",
    "entropy",
    "mc_dropout",
    "mc_predict",
    "rows_for_budget",
    "trunk_layers",
    "validate_options",
]


def __getattr__(name: str) -> Any:
    # The tracing instrumentation moved to dropout_tune.testing; old imports keep working.
    if name in ("trace_dropout", "DropoutTrace"):
        from .. import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
