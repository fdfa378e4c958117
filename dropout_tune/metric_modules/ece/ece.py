"""Expected calibration error over equal-width top-label confidence bins (Guo et al., 2017).

An evaluate module, loaded offline by path: evaluate.load(dropout_tune.metric_path("ece")). It computes
dropout_tune.calibration.ece exactly.
"""

import evaluate  # noqa: F401 - evaluate checks that the libraries a script imports are installed

from dropout_tune.metric_modules import _base

ExpectedCalibrationError = _base.metric_class("ExpectedCalibrationError", "ece", __doc__)
