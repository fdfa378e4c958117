"""Regularisation that sits next to dropout in a config: label smoothing, weight decay groups, R-Drop.

The rules match the Hugging Face ``Trainer`` so that a plain loop and a ``Trainer`` run train the same thing:
weight decay skips biases and normalisation weights (``Trainer.get_decay_parameter_names``), and label smoothing
is the Trainer's ``LabelSmoother`` (``label_smoothing_factor``).

Example:
    >>> config = RegularizationConfig(label_smoothing=0.1, weight_decay=0.01)
    >>> config.trainer_kwargs()
    {'label_smoothing_factor': 0.1, 'weight_decay': 0.01}
    >>> RegularizationConfig(label_smoothing=1.0)
    Traceback (most recent call last):
    ...
    ValueError: label_smoothing: 1.0 is outside [0, 1)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "RegularizationConfig", "NO_DECAY_NAME_PATTERNS", "decay_parameter_names", "param_groups", "make_optimizer",
    "label_smoothed_cross_entropy", "rdrop_loss", "rdrop_forward",
]

#: Parameter-name patterns the Trainer never decays (transformers 5.x ``Trainer.get_decay_parameter_names``);
#: parameters inside ``nn.LayerNorm`` modules are skipped as well.
NO_DECAY_NAME_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


@dataclass(frozen=True)
class RegularizationConfig:
    """Regularisation knobs besides dropout; validated on construction.

    ``rdrop_alpha`` > 0 turns on R-Drop (two forward passes, symmetric KL between them; see :func:`rdrop_loss`).
    """

    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    exclude_embeddings_from_decay: bool = False
    rdrop_alpha: float = 0.0

    def __post_init__(self) -> None:
        smoothing = _finite(self.label_smoothing, "label_smoothing")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label_smoothing: {self.label_smoothing!r} is outside [0, 1)")
        for name in ("weight_decay", "rdrop_alpha"):
            if _finite(getattr(self, name), name) < 0.0:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be >= 0")
        if not isinstance(self.exclude_embeddings_from_decay, bool):
            raise ValueError(f"exclude_embeddings_from_decay: {self.exclude_embeddings_from_decay!r} is not a "
                             f"boolean; expected true or false")
        for name in ("label_smoothing", "weight_decay", "rdrop_alpha"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RegularizationConfig":
        """From the ``regularization:`` mapping of a YAML config; unknown keys are errors.

        >>> RegularizationConfig.from_dict({"weight_decay": 0.01}).weight_decay
        0.01
        """
        valid = [f.name for f in fields(cls)]
        for key in data:
            if key not in valid:
                raise ValueError(f"regularization.{key}: unknown option; valid options: {', '.join(valid)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trainer_kwargs(self) -> dict[str, float]:
        """The ``TrainingArguments`` that carry this config. ``exclude_embeddings_from_decay`` and R-Drop are not
        Trainer options: pass ``optimizers=(make_optimizer(...), None)`` and use :func:`rdrop_forward`."""
        return {"label_smoothing_factor": self.label_smoothing, "weight_decay": self.weight_decay}


def _finite(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field}: {value!r} is not a finite number")
    return float(value)


def _embedding_parameter_ids(model: nn.Module) -> set[int]:
    # By identity, so a weight tied to an embedding (e.g. an LM head) is excluded whatever its name.
    return {id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()}


def decay_parameter_names(model: nn.Module, exclude_embeddings: bool = False) -> list[str]:
    """Names of the parameters that get weight decay: the Trainer's rule (no biases, no normalisation weights),
    and with ``exclude_embeddings`` no ``nn.Embedding`` tables (token, position, type, relative-position).

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    >>> decay_parameter_names(model)
    ['0.weight', '2.weight']
    >>> decay_parameter_names(model, exclude_embeddings=True)
    ['2.weight']
    """
    from transformers.trainer_pt_utils import get_parameter_names

    names = get_parameter_names(model, [nn.LayerNorm], list(NO_DECAY_NAME_PATTERNS))
    if not exclude_embeddings:
        return names
    embedding_ids = _embedding_parameter_ids(model)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    return [name for name in names if id(parameters[name]) not in embedding_ids]


def param_groups(model: nn.Module, weight_decay: float, exclude_embeddings: bool = False) -> list[dict[str, Any]]:
    """Optimizer parameter groups: trainable decayed parameters with ``weight_decay``, the rest with 0.
    Empty groups are left out.

    >>> from torch import nn
    >>> groups = param_groups(nn.Linear(4, 2), weight_decay=0.01)
    >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
    [(1, 0.01), (1, 0.0)]
    """
    decay = set(decay_parameter_names(model, exclude_embeddings))
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for name, p in trainable if name in decay], "weight_decay": float(weight_decay)},
        {"params": [p for name, p in trainable if name not in decay], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def make_optimizer(model: nn.Module, config: RegularizationConfig, lr: float, **adamw_kwargs: Any):
    """An AdamW over :func:`param_groups` of ``config``; for a plain loop, or ``Trainer(optimizers=(opt, None))``
    when embeddings are excluded from decay."""
    groups = param_groups(model, config.weight_decay, config.exclude_embeddings_from_decay)
    return torch.optim.AdamW(groups, lr=lr, **adamw_kwargs)


def label_smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, epsilon: float,
                                 ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy with label smoothing ``epsilon``, averaged over labels that are not ``ignore_index``: the
    loss of the Trainer's ``LabelSmoother`` (``(1 - ε)·NLL + ε·mean over classes of -log p``). Logits are
    ``(..., classes)``, labels ``(...)``; shift them yourself for causal LM.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> labels = torch.tensor([0, -100])
    >>> float(label_smoothed_cross_entropy(logits, labels, 0.0)) == float(F.cross_entropy(logits[:1], labels[:1]))
    True
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon: {epsilon!r} is outside [0, 1)")
    num_classes = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, num_classes).float(), labels.reshape(-1),
                           ignore_index=ignore_index, label_smoothing=epsilon)


def _symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits1.float(), dim=-1)
    log_q = F.log_softmax(logits2.float(), dim=-1)
    # KL(p||q) + KL(q||p) per item = sum over classes of (p - q)(log p - log q).
    per_item = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)
    return 0.5 * per_item[keep].sum() / keep.sum().clamp(min=1)


def rdrop_loss(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, alpha: float,
               label_smoothing: float = 0.0, ignore_index: int = -100) -> torch.Tensor:
    """R-Drop (Liang et al., NeurIPS 2021): the mean cross-entropy of two dropout passes plus ``alpha`` times
    their symmetric KL, ``(KL(p1||p2) + KL(p2||p1)) / 2``, averaged over labelled items.

    >>> logits = torch.tensor([[1.0, 0.0]])
    >>> labels = torch.tensor([0])
    >>> bool(rdrop_loss(logits, logits, labels, alpha=1.0) == F.cross_entropy(logits, labels))
    True
    """
    if alpha < 0:
        raise ValueError(f"alpha: {alpha!r} must be >= 0")
    ce = 0.5 * (label_smoothed_cross_entropy(logits1, labels, label_smoothing, ignore_index)
                + label_smoothed_cross_entropy(logits2, labels, label_smoothing, ignore_index))
    num_classes = logits1.shape[-1]
    keep = labels.reshape(-1) != ignore_index
    kl = _symmetric_kl(logits1.reshape(-1, num_classes), logits2.reshape(-1, num_classes), keep)
    return ce + alpha * kl


def rdrop_forward(model: nn.Module, inputs: Mapping[str, Any], alpha: float, label_smoothing: float = 0.0):
    """Two forward passes of ``model`` on ``inputs`` (which hold ``labels``), with independent dropout masks,
    and their :func:`rdrop_loss`. Returns ``(loss, outputs_of_first_pass)``."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    first, second = model(**inputs), model(**inputs)
    return rdrop_loss(first.logits, second.logits, labels, alpha, label_smoothing), first
