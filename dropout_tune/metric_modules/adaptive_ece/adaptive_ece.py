"""Expected calibration error over top-label equal-mass confidence bins whose edges are confidence quantiles, ties
sharing a bin (Nixon et al., 2019).

An evaluate module, loaded offline by path: evaluate.load(dropout_tune.metric_path("adaptive_ece")). It computes
dropout_tune.calibration.adaptive_ece exactly.
"""

import evaluate  # noqa: F401 - evaluate checks that the libraries a script imports are installed

from dropout_tune.metric_modules import _base

AdaptiveExpectedCalibrationError = _base.metric_class("AdaptiveExpectedCalibrationError", "adaptive_ece", __doc__)
