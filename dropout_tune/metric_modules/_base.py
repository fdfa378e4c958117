"""The shared ``evaluate.Metric`` of the calibration metric modules: each module's script only names its metric."""

from __future__ import annotations

from typing import Callable

import datasets
import evaluate

from .. import calibration

#: metric name -> (function of dropout_tune.calibration, takes n_bins)
FUNCTIONS: dict[str, tuple[Callable[..., float], bool]] = {
    "ece": (calibration.ece, True),
    "adaptive_ece": (calibration.adaptive_ece, True),
    "brier": (calibration.brier, False),
    "nll": (calibration.nll, False),
}

CITATION = """\
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML}, year={2017}}
@inproceedings{nixon2019measuring,
  title={Measuring Calibration in Deep Learning},
  author={Nixon, Jeremy and Dusenberry, Michael W. and Zhang, Linchuan and Jerfel, Ghassen and Tran, Dustin},
  booktitle={CVPR Workshops}, year={2019}}
"""

INPUTS = """\
Args:
    predictions: class probabilities, one row per example (softmax outputs, not logits); a single number per
        example is read as the probability of class 1.
    references: the integer class of each example.
    n_bins: confidence bins (ECE, adaptive ECE; default 15).
"""


class CalibrationMetric(evaluate.Metric):
    """An ``evaluate.Metric`` computing ``function(probs, labels[, n_bins])`` of ``dropout_tune.calibration``."""

    metric_name: str = ""
    function: Callable[..., float]
    binned: bool = False
    summary: str = ""

    def _info(self) -> evaluate.MetricInfo:
        rows = datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                  "references": datasets.Value("int64")})
        binary = datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("int64")})
        return evaluate.MetricInfo(description=self.summary, citation=CITATION, inputs_description=INPUTS,
                                   features=[rows, binary], reference_urls=["https://arxiv.org/abs/1904.01685"])

    def _compute(self, predictions, references, n_bins: int = 15) -> dict[str, float]:
        if self.binned:
            return {self.metric_name: float(self.function(predictions, references, n_bins))}
        return {self.metric_name: float(self.function(predictions, references))}


def metric_class(class_name: str, metric_name: str, doc: str) -> type:
    """The ``CalibrationMetric`` of ``metric_name``, for a module script: ``doc`` (the script's docstring) gives its
    description. evaluate finds it as the script's one ``EvaluationModule`` class."""
    function, binned = FUNCTIONS[metric_name]
    return type(class_name, (CalibrationMetric,), {"metric_name": metric_name, "function": staticmethod(function),
                                                   "binned": binned, "summary": doc.split("\n\n")[0].replace("\n", " "),
                                                   "__doc__": doc})
