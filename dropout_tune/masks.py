"""Mask kinds: what one dropout site drops, beyond how often. Each kind is a function of ``(x, p, training)``
plus the :class:`MaskedDropout` module that applies it (timm's ``drop_path`` beside ``DropPath``).

For an input ``x`` of shape ``(B, T, ..., D)`` (batch first, features last; a 2-D ``(B, D)`` has no positions) and
rate ``p``:

=================  ==============================================================================================
``element``        ``x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)`` per element (``F.dropout``, the default)
``per_sequence``   one mask per example and feature, shared by every position: ``m`` of shape ``(B, 1, ..., D)``
                   (alias ``variational``: Gal & Ghahramani 2016)
``token``          one mask per example and position, shared by every feature: ``m`` of shape ``(B, T, ..., 1)``
``example``        one draw per example: ``m`` of shape ``(B, 1, ..., 1)`` (alias ``drop_path``: stochastic depth
                   when it drops a residual branch, Huang et al. 2016)
``gaussian``       ``x * e``, ``e ~ Normal(1, p / (1 - p))`` per element: multiplicative noise, no zeros
``alpha``          ``F.alpha_dropout``: keeps a SELU network's mean and variance (Klambauer et al. 2017)
=================  ==============================================================================================

In eval mode every kind is the identity, and ``p = 0`` is the identity and draws nothing. ``p`` may also be a 0-dim
tensor (what a compile-ready rate reads as while ``torch.compile`` traces), so a schedule recompiles nothing.

Example:
    >>> import torch
    >>> x = torch.ones(2, 5, 3)
    >>> y = drop(x, 0.5, mask="per_sequence", generator=torch.Generator().manual_seed(0))
    >>> bool((y == y[:, :1]).all())  # every position of an example shares its mask
    True
    >>> MaskedDropout(0.1, mask="variational")
    MaskedDropout(p=0.1, inplace=False, mask=per_sequence)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

ELEMENT = "element"
#: SELU's negative saturation value: ``-scale * alpha`` of ``F.selu`` (the alpha' of Klambauer et al. 2017).
SELU_SATURATION = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


@dataclass(frozen=True)
class MaskKind:
    """One mask kind: how to draw the multiplicative noise for an input of a given shape."""

    name: str
    noise_shape: Callable[[torch.Size], tuple[int, ...]]
    description: str
    bernoulli: bool = True  # keeps or zeroes (scaled by 1 / (1 - p)); else its own noise


def _per_element(shape: torch.Size) -> tuple[int, ...]:
    return tuple(shape)


def _per_sequence(shape: torch.Size) -> tuple[int, ...]:
    return (shape[0], *([1] * (len(shape) - 2)), shape[-1]) if len(shape) >= 2 else tuple(shape)


def _per_token(shape: torch.Size) -> tuple[int, ...]:
    return (*shape[:-1], 1) if len(shape) >= 2 else tuple(shape)


def _per_example(shape: torch.Size) -> tuple[int, ...]:
    return (shape[0], *([1] * (len(shape) - 1))) if len(shape) >= 1 else ()


#: name -> kind; adding a kind is one entry here and a test.
MASK_KINDS: dict[str, MaskKind] = {kind.name: kind for kind in (
    MaskKind(ELEMENT, _per_element, "one draw per element (standard dropout)"),
    MaskKind("per_sequence", _per_sequence, "one mask per example and feature, shared by every position"),
    MaskKind("token", _per_token, "one mask per example and position, shared by every feature"),
    MaskKind("example", _per_example, "one draw per example (drop-path / stochastic depth on a residual branch)"),
    MaskKind("gaussian", _per_element, "multiplicative Normal(1, p / (1 - p)) noise per element", bernoulli=False),
    MaskKind("alpha", _per_element, "AlphaDropout: keeps SELU activations' mean and variance", bernoulli=False),
)}
MASK_ALIASES = {"variational": "per_sequence", "drop_path": "example"}


def mask_kind(name: str) -> str:
    """The canonical name of mask kind ``name`` (aliases resolved); a ValueError with a close match otherwise.

    >>> mask_kind("variational"), mask_kind("token")
    ('per_sequence', 'token')
    >>> mask_kind("per_sequnce")
    Traceback (most recent call last):
    ...
    ValueError: unknown mask 'per_sequnce'; did you mean 'per_sequence'? (masks: element, per_sequence, token, example, gaussian, alpha; aliases: variational, drop_path)
    """
    name = str(name).strip()
    name = MASK_ALIASES.get(name, name)
    if name in MASK_KINDS:
        return name
    close = difflib.get_close_matches(name, [*MASK_KINDS, *MASK_ALIASES], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    raise ValueError(f"unknown mask {name!r}{hint} (masks: {', '.join(MASK_KINDS)}; aliases: "
                     f"{', '.join(MASK_ALIASES)})")


def _is_zero(p: Any) -> bool:
    return not isinstance(p, torch.Tensor) and p == 0


def drop(x: torch.Tensor, p: Any, training: bool = True, mask: str = ELEMENT, inplace: bool = False,
         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Dropout of ``x`` at rate ``p`` (a float, or a 0-dim tensor under ``torch.compile``) with mask kind ``mask``.

    ``element`` with a float rate is ``F.dropout`` itself (bit for bit). Eval mode and ``p = 0`` return ``x`` and
    draw nothing.

    >>> x = torch.ones(3, 4)
    >>> drop(x, 0.0) is x, drop(x, 0.5, training=False) is x
    (True, True)
    """
    if not training or _is_zero(p):
        return x
    kind = MASK_KINDS[mask] if mask in MASK_KINDS else MASK_KINDS[mask_kind(mask)]
    if kind.name == ELEMENT and not isinstance(p, torch.Tensor) and generator is None:
        return F.dropout(x, p, True, inplace)
    if kind.name == "alpha":
        if not isinstance(p, torch.Tensor) and generator is None:
            return F.alpha_dropout(x, p, True, inplace)
        return _alpha(x, p, inplace, generator)
    shape = kind.noise_shape(x.shape)
    if kind.name == "gaussian":
        if not isinstance(p, torch.Tensor) and p >= 1:
            raise ValueError(f"gaussian dropout needs p < 1 (its noise has variance p / (1 - p)), got {p}")
        std = torch.sqrt(torch.as_tensor(p, dtype=torch.float32, device=x.device) / (1 - p))
        noise = (1 + std * torch.randn(shape, device=x.device, dtype=torch.float32, generator=generator)).to(x.dtype)
    else:
        keep = torch.rand(shape, device=x.device, dtype=torch.float32, generator=generator) >= p
        if isinstance(p, torch.Tensor):
            scale = torch.where(p < 1, 1 / (1 - p), torch.zeros_like(p)).to(x.dtype)
        else:
            scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        noise = keep.to(x.dtype) * scale
    return x.mul_(noise) if inplace else x * noise


def _alpha(x: torch.Tensor, p: Any, inplace: bool, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``F.alpha_dropout`` written out, so the rate may be a tensor: dropped units go to SELU's saturation value,
    then an affine map restores mean 0 and variance 1."""
    keep = (torch.rand(x.shape, device=x.device, dtype=torch.float32, generator=generator) >= p).to(x.dtype)
    p = torch.as_tensor(p, dtype=torch.float32, device=x.device)
    a = ((1 - p) * (1 + p * SELU_SATURATION ** 2)).rsqrt().to(x.dtype)
    b = (SELU_SATURATION * p).to(x.dtype) * -a
    out = (x * keep + SELU_SATURATION * (1 - keep)) * a + b
    return x.copy_(out) if inplace else out


class MaskedDropout(nn.Dropout):
    """``nn.Dropout`` with a mask kind (see the module docstring); ``mask="element"`` behaves exactly like
    ``nn.Dropout``. ``apply_dropout`` puts one in place of a site's ``nn.Dropout`` when a spec asks for another
    mask, and ``restore_dropout`` puts the original back.

    >>> layer = MaskedDropout(0.5, mask="example").train()
    >>> y = layer(torch.ones(4, 3, 2))
    >>> sorted({float(v) for v in y.flatten()}) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, mask: str = ELEMENT) -> None:
        super().__init__(p, inplace)
        self.mask = mask_kind(mask)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.dropped(input, self.p)

    def dropped(self, input: torch.Tensor, p: Any) -> torch.Tensor:
        """The forward at rate ``p`` (a float, or the 0-dim tensor a compile-ready rate reads as when traced)."""
        return drop(input, p, self.training, self.mask, self.inplace)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask={self.mask}"


#: The mask of a DropHead site: one draw per example and head (a ``head`` site's mask cannot be changed).
HEADS = "heads"


def drop_heads(x: torch.Tensor, p: Any, heads: int, training: bool = True,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DropHead (Zhou et al. 2020): ``x`` is the heads' context ``(B, T, ..., H * d_head)``; viewed as
    ``(B, T, ..., H, d_head)`` it is multiplied by ``m / (1 - p)`` with ``m`` of shape ``(B, 1, ..., H, 1)``: a
    head is kept or dropped as a whole, for every position of an example.

    >>> x = torch.ones(2, 3, 8)
    >>> y = drop_heads(x, 0.5, heads=4, generator=torch.Generator().manual_seed(0))
    >>> [sorted({float(v) for v in y[b, :, 2 * h:2 * h + 2].flatten()}) for b in range(1) for h in range(4)]
    [[0.0], [2.0], [0.0], [0.0]]
    """
    if not training or _is_zero(p):
        return x
    if x.shape[-1] % heads:
        raise ValueError(f"head dropout: the input's last dimension {x.shape[-1]} is not a multiple of the "
                         f"{heads} heads")
    shape = (x.shape[0], *([1] * (x.dim() - 2)), heads, 1)
    keep = torch.rand(shape, device=x.device, dtype=torch.float32, generator=generator) >= p
    scale = (torch.where(p < 1, 1 / (1 - p), torch.zeros_like(p)) if isinstance(p, torch.Tensor)
             else (1.0 / (1.0 - p) if p < 1 else 0.0))
    noise = (keep.to(x.dtype) * scale).expand(*x.shape[:-1], heads, x.shape[-1] // heads)
    return x * noise.reshape(x.shape)
