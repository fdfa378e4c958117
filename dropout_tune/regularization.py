"""Regularisation that sits next to dropout in a config: label smoothing, weight decay groups, R-Drop, and the
training loss computed from logits.

The rules match the Hugging Face ``Trainer`` so that a plain loop and a ``Trainer`` run train the same thing:
weight decay skips biases and normalisation weights (``Trainer.get_decay_parameter_names``), label smoothing
is the Trainer's ``LabelSmoother`` (``label_smoothing_factor``), and the loss of a head (cross-entropy, MSE,
BCE) is the one its ``forward`` computes, except that it is normalised by the Trainer's ``num_items_in_batch``
when given, so gradient accumulation gives the gradient of one large batch.

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
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "RegularizationConfig", "NO_DECAY_NAME_PATTERNS", "EMBEDDING_PARAMETER_NAMES", "decay_parameter_names",
    "param_groups", "make_optimizer", "resolve_problem_type", "head_loss", "label_smoothed_cross_entropy",
    "rdrop_loss", "rdrop_forward", "doubled_batch", "trainer_loss_function",
]

#: Parameter-name patterns the Trainer never decays (transformers 5.x ``Trainer.get_decay_parameter_names``);
#: parameters inside ``nn.LayerNorm`` modules are skipped as well.
NO_DECAY_NAME_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")

#: Names of bare ``nn.Parameter`` embeddings (not ``nn.Embedding`` tables) that ``exclude_embeddings`` also leaves
#: undecayed: ViT/DeiT position embeddings and special tokens, Swin's relative-position bias table.
EMBEDDING_PARAMETER_NAMES = ("position_embeddings", "cls_token", "mask_token", "distillation_token",
                             "relative_position_bias_table")

SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


@dataclass(frozen=True)
class RegularizationConfig:
    """Regularisation knobs besides dropout; validated on construction.

    ``rdrop_alpha`` > 0 turns on R-Drop with the paper's α (see :func:`rdrop_loss`).
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trainer_kwargs(self) -> dict[str, float]:
        """The ``TrainingArguments`` that carry this config. ``exclude_embeddings_from_decay`` and R-Drop are not
        Trainer options: pass ``optimizers=(make_optimizer(...), None)`` and ``compute_loss_func=``
        :func:`trainer_loss_function` (or use :func:`rdrop_forward` in a plain loop)."""
        return {"label_smoothing_factor": self.label_smoothing, "weight_decay": self.weight_decay}


def _finite(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field}: {value!r} is not a finite number")
    return float(value)


def _embedding_parameter_ids(model: nn.Module) -> set[int]:
    # By identity, so a weight tied to an embedding (e.g. an LM head) is excluded whatever its name.
    ids = {id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()}
    for module in model.modules():
        ids.update(id(p) for name, p in module.named_parameters(recurse=False) if name in EMBEDDING_PARAMETER_NAMES)
    return ids


def decay_parameter_names(model: nn.Module, exclude_embeddings: bool = False) -> list[str]:
    """Names of the parameters that get weight decay: the Trainer's rule (no biases, no normalisation weights),
    and with ``exclude_embeddings`` no ``nn.Embedding`` tables (token, position, type, relative-position) and no
    bare embedding parameters (:data:`EMBEDDING_PARAMETER_NAMES`: ViT's ``position_embeddings``, ``cls_token``...).

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


# ---- losses from logits ----------------------------------------------------------------------------------------


def resolve_problem_type(problem_type: Optional[str], num_labels: int, labels: torch.Tensor) -> str:
    """The loss a transformers sequence-classification head picks: the config's ``problem_type`` if set, else
    regression for one label, single-label classification for integer labels, multi-label otherwise.

    >>> resolve_problem_type(None, 1, torch.tensor([0.5])), resolve_problem_type(None, 3, torch.tensor([2]))
    ('regression', 'single_label_classification')
    """
    if problem_type:
        if problem_type not in (SINGLE_LABEL, MULTI_LABEL, REGRESSION):
            raise ValueError(f"problem_type {problem_type!r} is not one of {SINGLE_LABEL}, {MULTI_LABEL}, "
                             f"{REGRESSION}")
        return problem_type
    if num_labels == 1:
        return REGRESSION
    return SINGLE_LABEL if labels.dtype in (torch.long, torch.int) else MULTI_LABEL


def _flatten(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of class logits and their labels (single-label), or matching predictions and targets per element."""
    if problem_type == SINGLE_LABEL:
        return logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    if problem_type == REGRESSION and logits.shape[-1] == 1:  # the head squeezes its one output
        return logits.reshape(-1).float(), labels.reshape(-1).float()
    return logits.float(), labels.float()


def _item_losses(logits: torch.Tensor, labels: torch.Tensor, problem_type: str, label_smoothing: float,
                 ignore_index: int) -> torch.Tensor:
    """Per-item loss (0 where the label is ``ignore_index``) of flattened logits, as the head computes it."""
    if label_smoothing and problem_type != SINGLE_LABEL:
        raise ValueError(f"label_smoothing: {label_smoothing!r} needs single-label classification, not "
                         f"{problem_type}")
    if problem_type == SINGLE_LABEL:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index, label_smoothing=label_smoothing,
                               reduction="none")
    if problem_type == REGRESSION:
        return (logits - labels) ** 2
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")


def _item_divergence(logits1: torch.Tensor, logits2: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Per item, the consistency term of R-Drop between two passes (see :func:`rdrop_loss`)."""
    if problem_type == SINGLE_LABEL:
        log_p, log_q = F.log_softmax(logits1, dim=-1), F.log_softmax(logits2, dim=-1)
        # (KL(p||q) + KL(q||p)) / 2 = sum over classes of (p - q)(log p - log q) / 2
        return 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)
    if problem_type == REGRESSION:
        # MSE is twice the unit-variance Gaussian NLL; (y1 - y2)^2 is twice that Gaussian's symmetric KL / 2
        return (logits1 - logits2) ** 2
    # Bernoulli per label: (KL(p||q) + KL(q||p)) / 2 = (p - q)(logit p - logit q) / 2
    return 0.5 * (torch.sigmoid(logits1) - torch.sigmoid(logits2)) * (logits1 - logits2)


def _normalise(total: torch.Tensor, labels: torch.Tensor, problem_type: str, num_items: Any,
               ignore_index: int) -> torch.Tensor:
    if num_items is None:
        count = (labels != ignore_index).sum() if problem_type == SINGLE_LABEL else labels.numel()
        return total / max(int(count), 1)
    return total / (num_items.to(total.device) if torch.is_tensor(num_items) else num_items)


def head_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str = SINGLE_LABEL,
              label_smoothing: float = 0.0, num_items: Any = None, ignore_index: int = -100) -> torch.Tensor:
    """The loss a transformers classification / regression head computes from ``logits`` (cross-entropy, MSE,
    or BCE per label), with optional label smoothing (single-label only).

    The per-item losses are summed and divided by ``num_items`` when given (the Trainer's ``num_items_in_batch``:
    the labelled items of the whole accumulated batch), else by this batch's labelled items (the head's mean).

    >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    >>> bool(torch.isclose(head_loss(logits, labels), F.cross_entropy(logits, labels)))
    True
    >>> bool(torch.isclose(head_loss(logits, labels, num_items=4), F.cross_entropy(logits, labels) / 2))
    True
    """
    logits, labels = _flatten(logits, labels, problem_type)
    total = _item_losses(logits, labels, problem_type, label_smoothing, ignore_index).sum()
    return _normalise(total, labels, problem_type, num_items, ignore_index)


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
    return head_loss(logits, labels, SINGLE_LABEL, epsilon, ignore_index=ignore_index)


def rdrop_loss(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, alpha: float,
               label_smoothing: float = 0.0, ignore_index: int = -100, problem_type: str = SINGLE_LABEL,
               num_items: Any = None) -> torch.Tensor:
    """R-Drop (Liang et al., NeurIPS 2021) with the paper's α. Eq. 3 of the paper, per item:
    ``L = NLL_1 + NLL_2 + α · (KL(P1||P2) + KL(P2||P1)) / 2``, the NLL of both dropout passes plus α times their
    mean bidirectional KL. This returns eq. 3 divided by 2, ``(NLL_1 + NLL_2)/2 + α/2 · (KL12 + KL21)/2``, so the
    loss stays on the scale of one pass's cross-entropy (learning rates and logged losses compare with runs
    without R-Drop) while α weighs the KL exactly as in the paper. (The authors' README snippet uses
    ``0.5·(CE1 + CE2) + α·(KL12 + KL21)/2``, whose α is twice the paper's.)

    Regression: NLL is the squared error and the consistency term ``(y1 - y2)^2``: eq. 3 for a unit-variance
    Gaussian, whose NLL and symmetric KL are both half of these. Multi-label: BCE and the Bernoulli KL per label.
    Items are summed and divided as in :func:`head_loss` (``num_items``, else this batch's labelled items).

    >>> logits = torch.tensor([[1.0, 0.0]])
    >>> labels = torch.tensor([0])
    >>> bool(rdrop_loss(logits, logits, labels, alpha=1.0) == F.cross_entropy(logits, labels))
    True
    """
    if alpha < 0:
        raise ValueError(f"alpha: {alpha!r} must be >= 0")
    logits1, flat_labels = _flatten(logits1, labels, problem_type)
    logits2, _ = _flatten(logits2, labels, problem_type)
    nll = (_item_losses(logits1, flat_labels, problem_type, label_smoothing, ignore_index)
           + _item_losses(logits2, flat_labels, problem_type, label_smoothing, ignore_index))
    divergence = _item_divergence(logits1, logits2, problem_type)
    if problem_type == SINGLE_LABEL:
        divergence = divergence * (flat_labels != ignore_index)
    total = (0.5 * nll + 0.5 * alpha * divergence).sum()
    return _normalise(total, flat_labels, problem_type, num_items, ignore_index)


def _problem_type_of(model: nn.Module, labels: torch.Tensor) -> str:
    from .runtime import unwrap_model

    config = unwrap_model(model).config
    return resolve_problem_type(getattr(config, "problem_type", None), config.num_labels, labels)


def rdrop_forward(model: nn.Module, inputs: Mapping[str, Any], alpha: float, label_smoothing: float = 0.0,
                  num_items: Any = None):
    """Two forward passes of ``model`` on ``inputs`` (which hold ``labels``), with independent dropout masks,
    and their :func:`rdrop_loss` (the problem type read from the model's config, as its head does). For a plain
    loop; the Trainer path is :func:`trainer_loss_function`. Returns ``(loss, outputs_of_first_pass)``."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    first, second = model(**inputs), model(**inputs)
    loss = rdrop_loss(first.logits, second.logits, labels, alpha, label_smoothing,
                      problem_type=_problem_type_of(model, labels), num_items=num_items)
    return loss, first


def doubled_batch(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` with every batched tensor repeated once along the batch axis (labels left alone): one forward
    pass then draws two independent dropout masks per example, as in the R-Drop authors' implementation.

    >>> doubled_batch({"input_ids": torch.tensor([[5, 6]]), "labels": torch.tensor([1])})["input_ids"].tolist()
    [[5, 6], [5, 6]]
    """
    return {key: torch.cat([value, value]) if key != "labels" and torch.is_tensor(value) and value.dim() > 0
            else value for key, value in inputs.items()}


def trainer_loss_function(model: nn.Module, label_smoothing: float = 0.0,
                          rdrop_alpha: float = 0.0) -> Callable[..., torch.Tensor]:
    """A ``Trainer(compute_loss_func=...)``: the head's loss from logits (:func:`head_loss`) normalised by the
    Trainer's ``num_items_in_batch``, so ``gradient_accumulation_steps`` k with batch b trains and logs exactly as
    batch k·b. When the logits hold twice as many rows as the labels (a :func:`doubled_batch` in training) and
    ``rdrop_alpha`` > 0, the two halves are R-Drop's two passes (:func:`rdrop_loss`)."""

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        problem_type = _problem_type_of(model, labels)
        if rdrop_alpha > 0 and logits.shape[0] == 2 * labels.shape[0] > 0:
            first, second = logits.chunk(2)
            return rdrop_loss(first, second, labels, rdrop_alpha, label_smoothing, problem_type=problem_type,
                              num_items=num_items_in_batch)
        return head_loss(logits, labels, problem_type, label_smoothing, num_items_in_batch)

    return compute_loss
