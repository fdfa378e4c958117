"""`DropoutSpec`: one dropout rate per role, ``None`` meaning "leave that role as it is", and optionally the
role's mask kind (``dropout_tune.masks``) and depth profile.

A role's entry is a rate (``hidden=0.1``), or a rate with options (``hidden=0.1:mask=per_sequence:depth=linear``;
in a dict ``{"hidden": {"p": 0.1, "mask": "per_sequence", "depth": "linear"}}``). ``mask`` left out keeps each
site's mask; ``depth=linear`` gives layer ``l`` of ``L`` the rate ``p * l / (L - 1)`` (timm's
``linspace(0, p, L)``), ``depth=uniform`` (the default) the same rate in every layer.

Example:
    >>> DropoutSpec.parse("attention=0.1,hidden=0.05")
    DropoutSpec(attention=0.1, hidden=0.05)
    >>> DropoutSpec.uniform(0.0).as_dict()["lora"]
    0.0
    >>> DropoutSpec.parse("hidden=0.1:mask=variational:depth=linear")
    DropoutSpec(hidden=0.1:mask=per_sequence:depth=linear)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Optional, Union

from .masks import mask_kind
from .roles import ALL_ROLES, ROLES, expand_all, is_number, parse_assignments, validate_rate, validate_role

#: Depth profiles: how a role's rate is spread over the layers.
DEPTHS = ("uniform", "linear")
_OPTIONS = ("mask", "depth")


def depth_profile(name: str) -> str:
    """``name`` if it is a depth profile, else a ValueError naming the choices."""
    if name not in DEPTHS:
        raise ValueError(f"unknown depth {name!r}; valid: {', '.join(DEPTHS)}")
    return name


def _pairs(value: Union[Mapping[str, str], Iterable[tuple[str, str]], None], check) -> tuple[tuple[str, str], ...]:
    items = dict(value.items() if isinstance(value, Mapping) else (value or ()))
    return tuple((validate_role(role), check(items[role])) for role in ROLES if role in items)


@dataclass(frozen=True)
class DropoutSpec:
    """Dropout rate per role; a role left at ``None`` is not touched. ``masks`` and ``depths``: role -> mask kind
    and role -> depth profile, for roles that set them (a mapping, kept as sorted pairs)."""

    embedding: Optional[float] = None
    attention: Optional[float] = None
    hidden: Optional[float] = None
    activation: Optional[float] = None
    classifier: Optional[float] = None
    lora: Optional[float] = None
    head: Optional[float] = None
    masks: Any = ()
    depths: Any = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name in ROLES:
                object.__setattr__(self, f.name, validate_rate(value, f.name))
        object.__setattr__(self, "masks", _pairs(self.masks, mask_kind))
        object.__setattr__(self, "depths", tuple((r, d) for r, d in _pairs(self.depths, depth_profile)
                                                 if d != "uniform"))
        for role, _ in (*self.masks, *self.depths):
            if getattr(self, role) is None:
                raise ValueError(f"{role}: a mask or depth needs a rate, e.g. {role}=0.1:mask=per_sequence")

    def __repr__(self) -> str:
        return f"DropoutSpec({', '.join(f'{role}={self.entry_text(role)}' for role, _ in self.items())})"

    def entry_text(self, role: str) -> str:
        """The role's entry in the compact form: ``0.1`` or ``0.1:mask=per_sequence:depth=linear``."""
        options = [f"{name}={value}" for name, value in (("mask", self.mask_of(role)), ("depth", self.depth_of(role)))
                   if value is not None and value != "uniform"]
        return ":".join([repr(getattr(self, role)), *options])

    def mask_of(self, role: str) -> Optional[str]:
        """The mask kind this spec sets for ``role`` (None: each site keeps its own)."""
        return dict(self.masks).get(role)

    def depth_of(self, role: str) -> str:
        return dict(self.depths).get(role, "uniform")

    def only(self, roles: Iterable[str]) -> "DropoutSpec":
        """This spec restricted to ``roles`` (masks and depths kept).

        >>> DropoutSpec.parse("hidden=0.1:mask=token,lora=0.2").only(["hidden"])
        DropoutSpec(hidden=0.1:mask=token)
        """
        keep = set(roles)
        return DropoutSpec(**{role: p for role, p in self.items() if role in keep},
                           masks={r: m for r, m in self.masks if r in keep},
                           depths={r: d for r, d in self.depths if r in keep})

    def with_rates(self, rates: Mapping[str, float]) -> "DropoutSpec":
        """New rates for some roles, each role's mask and depth kept (what a schedule step applies)."""
        merged = {**dict(self.items()), **rates}
        return DropoutSpec(**merged, masks=dict(self.masks), depths=dict(self.depths))

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict form: ``{role: p}``, or ``{role: {"p": p, "mask": ..., "depth": ...}}`` for roles
        with options (what YAML and a run's identity hold).

        >>> DropoutSpec.parse("hidden=0.1:mask=token,attention=0").to_dict()
        {'attention': 0.0, 'hidden': {'p': 0.1, 'mask': 'token'}}
        """
        out: dict[str, Any] = {}
        for role, p in self.items():
            options = {k: v for k, v in (("mask", self.mask_of(role)), ("depth", self.depth_of(role)))
                       if v is not None and v != "uniform"}
            out[role] = {"p": p, **options} if options else p
        return out

    @classmethod
    def uniform(cls, p: float) -> "DropoutSpec":
        """The same rate for every role (``head`` aside: DropHead is asked for by name).

        >>> DropoutSpec.uniform(0.1).hidden, DropoutSpec.uniform(0.1).head
        (0.1, None)
        """
        p = validate_rate(p, "uniform")
        return cls(**{role: p for role in ALL_ROLES})

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "DropoutSpec":
        """From ``{"attention": 0.1, ...}``; the key ``"all"`` sets every role not named explicitly.

        >>> DropoutSpec.from_dict({"all": 0.0, "lora": 0.05}).lora
        0.05
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"dropout spec must be a mapping of role to rate, got {type(data).__name__}")
        rates: dict[str, Any] = {}
        options: dict[str, dict[str, str]] = {"mask": {}, "depth": {}}
        for role, value in expand_all(data).items():
            rates[role], found = _entry(role, value)
            for name, choice in found.items():
                options[name][role] = choice
        return cls(**rates, masks=options["mask"], depths=options["depth"])

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

    def items(self) -> list[tuple[str, float]]:  # noqa: D401 - the rates only; masks and depths apart
        """(role, rate) for the roles that are set."""
        return [(role, getattr(self, role)) for role in ROLES if getattr(self, role) is not None]

    def as_dict(self) -> dict[str, Optional[float]]:
        return {role: getattr(self, role) for role in ROLES}

    def __getitem__(self, role: str) -> Optional[float]:
        return getattr(self, validate_role(role))

    def __bool__(self) -> bool:
        return bool(self.items())


def _entry(role: str, value: Any) -> tuple[Any, dict[str, str]]:
    """(rate, {option: choice}) of one role's entry: a rate, ``"0.1:mask=token"`` or ``{"p": 0.1, "mask": ...}``.

    >>> _entry("hidden", "0.1:mask=token:depth=linear")
    ('0.1', {'mask': 'token', 'depth': 'linear'})
    """
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"p", *_OPTIONS})
        if unknown or "p" not in value:
            raise ValueError(f"{role}: expected {{p: RATE, mask: KIND, depth: PROFILE}}, got keys "
                             f"{', '.join(map(str, value)) or 'none'}")
        return value["p"], {k: str(value[k]) for k in _OPTIONS if value.get(k) is not None}
    if not isinstance(value, str) or ":" not in value:
        return value, {}
    rate, *parts = value.split(":")
    found: dict[str, str] = {}
    for part in parts:
        name, sep, choice = part.partition("=")
        if not sep or name.strip() not in _OPTIONS:
            raise ValueError(f"{role}: cannot parse {part!r} in {value!r}; expected mask=KIND or depth=PROFILE")
        found[name.strip()] = choice.strip()
    return rate.strip(), found
