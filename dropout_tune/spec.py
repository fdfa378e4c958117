"""`DropoutSpec`: one dropout rate per role, ``None`` meaning "leave that role as it is".

Example:
    >>> DropoutSpec.parse("attention=0.1,hidden=0.05")
    DropoutSpec(attention=0.1, hidden=0.05)
    >>> DropoutSpec.uniform(0.0).as_dict()["lora"]
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Optional, Union

from .roles import ROLES, expand_all, is_number, parse_assignments, validate_rate, validate_role


@dataclass(frozen=True)
class DropoutSpec:
    """Dropout rate per role; a role left at ``None`` is not touched."""

    embedding: Optional[float] = None
    attention: Optional[float] = None
    hidden: Optional[float] = None
    activation: Optional[float] = None
    classifier: Optional[float] = None
    lora: Optional[float] = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, validate_rate(value, f.name))

    def __repr__(self) -> str:
        set_roles = ", ".join(f"{role}={p!r}" for role, p in self.items())
        return f"DropoutSpec({set_roles})"

    @classmethod
    def uniform(cls, p: float) -> "DropoutSpec":
        """The same rate for every role.

        >>> DropoutSpec.uniform(0.1).hidden
        0.1
        """
        p = validate_rate(p, "uniform")
        return cls(**{role: p for role in ROLES})

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "DropoutSpec":
        """From ``{"attention": 0.1, ...}``; the key ``"all"`` sets every role not named explicitly.

        >>> DropoutSpec.from_dict({"all": 0.0, "lora": 0.05}).lora
        0.05
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"dropout spec must be a mapping of role to rate, got {type(data).__name__}")
        return cls(**expand_all(data))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str) -> "DropoutSpec":
        """From ``"attention=0.1,hidden=0.05"``, ``"all=0.1"`` or a bare rate ``"0.1"`` (all roles); a bare rate
        among ROLE=RATE entries is for every role not named, like ``all=``.

        >>> DropoutSpec.parse("0.2").attention
        0.2
        >>> DropoutSpec.parse("0.1,attention=0")
        DropoutSpec(embedding=0.1, attention=0.0, hidden=0.1, activation=0.1, classifier=0.1, lora=0.1)
        """
        text = text.strip()
        if not text:
            raise ValueError("empty dropout spec; expected e.g. 'attention=0.1,hidden=0.05' or '0.1'")
        if "=" not in text:
            return cls.uniform(text)  # type: ignore[arg-type]
        return cls.from_dict(parse_assignments(text, "dropout spec", "ROLE=RATE, e.g. hidden=0.1", is_number))

    @classmethod
    def coerce(cls, value: Union["DropoutSpec", Mapping, str, float, None]) -> "DropoutSpec":
        """Accept a spec, a dict, a string or a number (uniform)."""
        if value is None:
            return cls()
        if isinstance(value, DropoutSpec):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if isinstance(value, str):
            return cls.parse(value)
        return cls.uniform(value)  # type: ignore[arg-type]

    def items(self) -> list[tuple[str, float]]:
        """(role, rate) for the roles that are set."""
        return [(role, getattr(self, role)) for role in ROLES if getattr(self, role) is not None]

    def as_dict(self) -> dict[str, Optional[float]]:
        return {role: getattr(self, role) for role in ROLES}

    def __getitem__(self, role: str) -> Optional[float]:
        return getattr(self, validate_role(role))

    def __bool__(self) -> bool:
        return bool(self.items())
