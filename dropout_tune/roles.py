"""The six dropout roles, and validation of a dropout rate.

Example:
    >>> validate_rate(0.1, "attention")
    0.1
    >>> validate_rate(1.5, "attention")
    Traceback (most recent call last):
    ...
    ValueError: attention: dropout rate 1.5 is outside [0, 1)
"""

from __future__ import annotations

import math
from enum import Enum


class Role(str, Enum):
    """Where a dropout site sits in a transformer (see the README's role table)."""

    EMBEDDING = "embedding"  # after the embedding sum / layer norm
    ATTENTION = "attention"  # on the attention probabilities
    HIDDEN = "hidden"  # on a sublayer's output, before the residual add
    ACTIVATION = "activation"  # inside the feed-forward block, after the non-linearity
    CLASSIFIER = "classifier"  # pooler and task head
    LORA = "lora"  # on the input of PEFT LoRA adapters


ROLES: tuple[str, ...] = tuple(r.value for r in Role)


def validate_role(role: str) -> str:
    """Return ``role`` if it is one of :data:`ROLES`, else raise a ValueError naming the choices."""
    if role not in ROLES:
        raise ValueError(f"unknown dropout role {role!r}; valid roles: {', '.join(ROLES)}")
    return role


def validate_rate(p: object, field: str = "p") -> float:
    """Return ``p`` as a float in [0, 1), else raise a ValueError naming ``field`` and the bad value."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        try:
            p = float(p)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{field}: dropout rate {p!r} is not a number; expected a float in [0, 1)") from None
    p = float(p)
    if math.isnan(p):
        raise ValueError(f"{field}: dropout rate is NaN; expected a float in [0, 1)")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{field}: dropout rate {p!r} is outside [0, 1)")
    return p
