"""Expected calibration error over equal-width top-label confidence bins (Guo et al., 2017).

An evaluate module, loaded offline by path: evaluate.load(dropout_tune.metric_path("ece")). It computes
dropout_tune.calibration.ece exactly.
"""

import evaluate  # noqa: F401 - evaluate checks that the libraries a script imports are installed

from dropout_tune.calibration import ece
from dropout_tune.metric_modules import _base


class ExpectedCalibrationError(_base.CalibrationMetric):
    metric_name = "ece"
    function = staticmethod(ece)
    binned = True
    summary = __doc__.split("\n\n")[0].replace("\n", " ")
