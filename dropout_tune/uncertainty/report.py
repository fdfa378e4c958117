"""The output files of ``dropout-tune uncertainty``: ``uncertainty.json`` (per method: metrics, the differences to
deterministic with their bootstrap intervals, verdicts, fitted temperature / prior precision / noise variance,
seconds), ``uncertainty.md`` (the table and a one-line verdict per method), ``predictions.npz`` (test ``labels``;
each method's test probabilities ``(N, C)`` under its name -- ``(N, 2)`` mean and variance for regression --;
``ood_<method>`` on the OOD task; ``validation_logits`` / ``validation_labels`` the temperature was fitted on and
``validation_mc_log_probs`` for mc+temperature), ``reliability.png`` (every method on one diagram) and
``risk_coverage.png``. Each file is written atomically.

An output directory that already holds any of these files is refused unless ``overwrite``; then these files (and
nothing else) are replaced.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..files import atomic_write_bytes, atomic_write_text, check_writable_dir, write_json
from ..figures import save_figure

OUTPUT_FILES = ("uncertainty.json", "uncertainty.md", "predictions.npz", "reliability.png", "risk_coverage.png")
LABELS = {"accuracy": "accuracy", "nll": "NLL", "brier": "Brier", "ece": "ECE", "adaptive_ece": "adaptive ECE",
          "aurc": "AURC", "ood_auroc": "OOD AUROC", "mse": "MSE"}


def check_output(output: Any, overwrite: bool = False) -> Path:
    """``output`` as a writable directory; a ValueError when it already holds outputs and ``overwrite`` is off."""
    if output is None:
        raise ValueError("-o/--output: required (the directory to write the outputs into)")
    path = check_writable_dir(output, what="-o/--output")
    present = [name for name in OUTPUT_FILES if (path / name).exists()]
    if present and not overwrite:
        raise ValueError(f"-o/--output {path}: already holds {', '.join(present)}; pass --overwrite to replace "
                         f"these files (nothing else there is removed), or choose another directory")
    return path


def _cell(metrics: Mapping[str, float], diff: Mapping[str, Any], key: str) -> str:
    value = f"{metrics[key]:.4f}"
    if key in diff:
        d = diff[key]
        value += f" ({d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}])"
    return value


def markdown(result: Mapping[str, Any]) -> str:
    """The table of metrics per method (differences to deterministic with 95% paired bootstrap intervals) and a
    verdict line per method."""
    methods = result["methods"]
    keys = list(methods["deterministic"]["metrics"])
    ood = result.get("ood")
    head = (f"{result['task']} test, n={result['n_test']}" + (f"; OOD: {ood['task']}, n={ood['n']}" if ood else ""))
    lines = [f"# Uncertainty: {head}", "",
             "Each cell: the metric, and for a method its difference to deterministic with the 95% paired bootstrap "
             f"interval over test examples ({result['bootstrap']['resamples']} resamples, seed "
             f"{result['bootstrap']['seed']}).", "",
             "| method | " + " | ".join(LABELS.get(k, k) for k in keys) + " | seconds | fitted |",
             "|---|" + "---:|" * (len(keys) + 2)]
    for name, m in methods.items():
        fitted = ", ".join(f"{label} {m[k]:.4g}" for k, label in (("temperature", "T"), ("prior_precision", "prior"),
                                                                   ("noise_variance", "noise var")) if k in m)
        if "members" in m:
            fitted = (fitted + ", " if fitted else "") + f"{len(m['members'])} runs"
        cells = [_cell(m["metrics"], m.get("difference", {}), k) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['seconds']:.1f} | {fitted} |")
    lines += ["", "Verdicts against deterministic (better / worse: the interval excludes 0):", ""]
    for name, m in methods.items():
        if "verdict" in m:
            lines.append(f"- **{name}**: " + "; ".join(f"{LABELS.get(k, k)} {v}" for k, v in m["verdict"].items()))
    mc = result.get("mc")
    if mc:
        rates = ", ".join(f"{role}={p:g}" for role, p in (mc.get("rates") or {}).items()) or "none"
        lines += ["", f"MC dropout: {mc['mode']}, T={mc['samples']}; rates sampled: {rates}."]
    lines += ["", "runs: " + ", ".join(result["runs"])]
    return "\n".join(lines) + "\n"


def reliability_figure(arrays: Mapping[str, np.ndarray], methods: list[str], n_bins: int):
    """Every method's reliability curve (accuracy per non-empty equal-width confidence bin) on one diagram."""
    from matplotlib.figure import Figure

    from ..calibration import reliability_bins

    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    for name in methods:
        bins = reliability_bins(arrays[name], arrays["labels"], n_bins)
        filled = bins.count > 0
        ax.plot(bins.confidence[filled], bins.accuracy[filled], marker="o", markersize=3,
                label=f"{name} (ECE {bins.expected_error():.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy",
           title=f"Reliability, {n_bins} equal-width bins")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def risk_coverage_figure(arrays: Mapping[str, np.ndarray], methods: list[str]):
    """Every method's risk-coverage curve, AURC in the legend."""
    from matplotlib.figure import Figure

    from .scores import risk_coverage

    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    for name in methods:
        coverage, risk = risk_coverage(arrays[name], arrays["labels"])
        ax.plot(coverage, risk, linewidth=1.2, label=f"{name} (AURC {risk.mean():.4f})")
    ax.set(xlim=(0, 1), xlabel="coverage (most confident first)", ylabel="risk (error rate)",
           title="Selective prediction by max probability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def write_outputs(out_dir: Path, result: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n_bins: int) -> None:
    """Write every output file into ``out_dir``."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(out_dir / "predictions.npz", buffer.getvalue())
    methods = list(result["methods"])
    if result["problem"] == "classification":
        save_figure(reliability_figure(arrays, methods, n_bins), out_dir / "reliability.png", dpi=100)
        save_figure(risk_coverage_figure(arrays, methods), out_dir / "risk_coverage.png", dpi=100)
    atomic_write_text(out_dir / "uncertainty.md", markdown(result))
    write_json(out_dir / "uncertainty.json", result)  # last: its presence means the run finished
