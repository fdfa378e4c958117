"""Mean negative log-likelihood of the labels in nats, the probability floored at 1e-12.

An evaluate module, loaded offline by path: evaluate.load(dropout_tune.metric_path("nll")). It computes
dropout_tune.calibration.nll exactly.
"""

import evaluate  # noqa: F401 - evaluate checks that the libraries a script imports are installed

from dropout_tune.metric_modules import _base

NegativeLogLikelihood = _base.metric_class("NegativeLogLikelihood", "nll", __doc__)
