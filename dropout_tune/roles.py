"""The dropout roles, validation of a dropout rate, and the ROLE=VALUE / all= notation shared by dropout specs
and schedule sets.

Example:
    >>> validate_rate(0.1, "attention")
    0.1
    >>> validate_rate(1.5, "attention")
    Traceback (most recent call last):
    ...
    ValueError: attention: dropout rate 1.5 is outside [0, 1)
    >>> expand_all(parse_assignments("hidden=0.2,all=0.1", what="dropout spec", expected="ROLE=RATE"))["lora"]
    '0.1'
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Callable, Mapping, Optional, TypeVar

_Value = TypeVar("_Value")


class Role(str, Enum):
    """Where a dropout site sits in a transformer (see the README's role table)."""

    EMBEDDING = "embedding"  # after the embedding sum / layer norm
    ATTENTION = "attention"  # on the attention probabilities
    HIDDEN = "hidden"  # on a sublayer's output, before the residual add
    ACTIVATION = "activation"  # inside the feed-forward block, after the non-linearity
    CLASSIFIER = "classifier"  # pooler and task head
    LORA = "lora"  # on the input of PEFT LoRA adapters
    HEAD = "head"  # whole attention heads, at the input of the attention's output projection (DropHead)


ROLES: tuple[str, ...] = tuple(r.value for r in Role)
#: The roles ``all`` and a uniform rate stand for: every role but ``head``, a structured variant (DropHead) that a
#: plain "dropout everywhere" does not mean.
ALL_ROLES: tuple[str, ...] = tuple(role for role in ROLES if role != Role.HEAD.value)

#: The key that stands for every role not named explicitly ({"all": 0.1, "lora": 0.0}, "all=0.1,lora=0"), ``head``
#: aside.
ALL = "all"


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


def is_number(text: str) -> bool:
    """Whether text reads as a number (a bare rate such as "0.1" in ROLE=VALUE lists).

    >>> is_number(" 0.1"), is_number("early")
    (True, False)
    """
    try:
        float(text)
    except ValueError:
        return False
    return True


def expand_all(assignments: Mapping[str, _Value]) -> dict[str, _Value]:
    """Role -> value, the key "all" giving its value to every role not named explicitly; in ROLES order.
    A key that is neither a role nor "all" raises a ValueError naming the valid roles.

    >>> expand_all({"all": 0.0, "lora": 0.05})
    {'embedding': 0.0, 'attention': 0.0, 'hidden': 0.0, 'activation': 0.0, 'classifier': 0.0, 'lora': 0.05}
    >>> expand_all({"mlp": 0.1})
    Traceback (most recent call last):
    ...
    ValueError: unknown dropout role 'mlp'; valid roles: embedding, attention, hidden, activation, classifier, lora, head
    """
    named = dict(assignments)
    everywhere = dict.fromkeys(ALL_ROLES, named.pop(ALL)) if ALL in named else {}
    for role in named:
        validate_role(role)
    merged = {**everywhere, **named}
    return {role: merged[role] for role in ROLES if role in merged}


def parse_assignments(text: str, what: str, expected: str,
                      is_bare_value: Optional[Callable[[str], bool]] = None) -> dict[str, str]:
    """Split "ROLE=VALUE,ROLE=VALUE" into {ROLE: VALUE} (text, stripped; keys are checked by expand_all).

    An entry that does not start with a role or "all" but for which is_bare_value(entry) holds is the value for
    "all", so "0.1,attention=0" means 0.1 everywhere except attention. what and expected go into the error messages
    ("dropout spec", "ROLE=RATE, e.g. hidden=0.1").

    >>> parse_assignments("hidden=0.1, 0.2", "dropout spec", "ROLE=RATE", is_bare_value=lambda e: "=" not in e)
    {'hidden': '0.1', 'all': '0.2'}
    >>> parse_assignments("hidden=0.1,hidden=0.2", "dropout spec", "ROLE=RATE")
    Traceback (most recent call last):
    ...
    ValueError: role 'hidden' given twice in dropout spec 'hidden=0.1,hidden=0.2'
    """
    entries: dict[str, str] = {}
    for part in text.split(","):
        role, sep, value = part.partition("=")
        role = role.strip()
        if (not sep or role not in (*ROLES, ALL)) and is_bare_value is not None and is_bare_value(part.strip()):
            role, sep, value = ALL, "=", part
        if not sep or not role or not value.strip():
            raise ValueError(f"cannot parse {part!r} in {what} {text!r}; expected {expected}")
        if role in entries:
            raise ValueError(f"role {role!r} given twice in {what} {text!r}")
        entries[role] = value.strip()
    return entries
