"""Multi-class Brier score: the mean over examples of the squared distance between the probabilities and the one-hot
label, in [0, 2].

An evaluate module, loaded offline by path: evaluate.load(dropout_tune.metric_path("brier")). It computes
dropout_tune.calibration.brier exactly.
"""

import evaluate  # noqa: F401 - evaluate checks that the libraries a script imports are installed

from dropout_tune.metric_modules import _base

BrierScore = _base.metric_class("BrierScore", "brier", __doc__)
