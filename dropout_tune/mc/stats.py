"""Per-example statistics of ``T`` sampled outputs (float64 torch), and the one entropy of the package.

>>> import torch
>>> round(float(entropy(torch.tensor([0.5, 0.5], dtype=torch.float64))), 6)
0.693147
"""

from __future__ import annotations

from typing import Optional

import torch


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last axis; ``0 log 0 = 0``."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def classification_stats(sampled: torch.Tensor, deterministic: Optional[torch.Tensor],
                         keep_samples: bool) -> dict[str, torch.Tensor]:
    """Statistics of ``(T, B, C)`` logits: the fields of :class:`ClassificationPrediction`."""
    probs = sampled.double().softmax(-1)  # (T, B, C); float64 so that PE = EE + MI holds to ~1e-15
    mean = probs.mean(0)
    predictive = entropy(mean)
    expected = entropy(probs).mean(0)
    votes = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).sum(0)  # (B, C) counts over T
    stats = {
        "mean_probs": mean,
        "std": probs.std(0, unbiased=False),
        "predictive_entropy": predictive,
        "expected_entropy": expected,
        "mutual_information": predictive - expected,
        "variation_ratio": 1.0 - votes.max(-1).values.double() / probs.shape[0],
        "prediction": mean.argmax(-1),
    }
    if deterministic is not None:
        det = deterministic.double().softmax(-1)
        stats["deterministic_probs"] = det
        stats["deterministic_prediction"] = det.argmax(-1)
        stats["deterministic_entropy"] = entropy(det)
    if keep_samples:
        stats["sample_outputs"] = probs.transpose(0, 1)
    return stats


def regression_stats(sampled: torch.Tensor, deterministic: Optional[torch.Tensor],
                     keep_samples: bool) -> dict[str, torch.Tensor]:
    """Statistics of ``(T, B, D)`` outputs: the fields of :class:`RegressionPrediction`."""
    values = sampled.double().squeeze(-1)  # (T, B) for one target, (T, B, D) for several
    variance = values.var(0, unbiased=False)
    stats = {"mean": values.mean(0), "variance": variance, "std": variance.sqrt()}
    if deterministic is not None:
        stats["deterministic_mean"] = deterministic.double().squeeze(-1)
    if keep_samples:
        stats["sample_outputs"] = values.transpose(0, 1)
    return stats
