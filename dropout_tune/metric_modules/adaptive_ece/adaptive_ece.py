"""Expected calibration error over top-label equal-mass confidence bins whose edges are confidence quantiles, ties
sharing a bin (Nixon et al., 2019).

An evaluate module, loaded offline by path: evaluate.load(dropout_tune.metric_path("adaptive_ece")). It computes
dropout_tune.calibration.adaptive_ece exactly.
"""

import evaluate  # noqa: F401 - evaluate checks that the libraries a script imports are installed

from dropout_tune.calibration import adaptive_ece
from dropout_tune.metric_modules import _base


class AdaptiveExpectedCalibrationError(_base.CalibrationMetric):
    metric_name = "adaptive_ece"
    function = staticmethod(adaptive_ece)
    binned = True
    summary = __doc__.split("\n\n")[0].replace("\n", " ")
