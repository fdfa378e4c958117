"""Schedules per role: reading one schedule from its dict or compact form, and :class:`ScheduleSet`.

    >>> ScheduleSet.coerce(0.1).rates(0.5)["hidden"], schedule_from_dict({"shape": "late", "p": 0.1, "start": 0.5})
    (0.1, Late(p=0.1, start=0.5))
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Iterator, Mapping, Union

from ..roles import ALL, ROLES, expand_all, validate_role
from ..schedule_text import parse_schedule, parse_schedule_set
from .shapes import _SHAPE_CLASSES, Constant, Early, Schedule, Shape, _check_progress, progress_of  # Early: doctests

__all__ = ["ScheduleSet", "ScheduleLike", "schedule_from_dict", "schedule_from_string"]


def _shape_named(name: object) -> Shape:
    try:
        return Shape(name)
    except ValueError:
        valid = ", ".join(s.value for s in Shape)
        raise ValueError(f"shape: unknown schedule shape {name!r}; valid shapes: {valid}") from None


def _parameter_names(cls: type[Schedule]) -> list[str]:
    return [f.name for f in fields(cls)]


#: shape name -> its parameters in order: what the compact form's positional arguments fill.
_SHAPE_PARAMETERS = {shape.value: _parameter_names(cls) for shape, cls in _SHAPE_CLASSES.items()}


def schedule_from_dict(data: Union[Mapping[str, Any], float, int]) -> Schedule:
    """One schedule from ``{"shape": "early", "p": 0.1, "until": 0.3}``; a bare number is a constant.

    >>> schedule_from_dict({"shape": "late", "p": 0.1, "start": 0.5})
    Late(p=0.1, start=0.5)
    >>> schedule_from_dict(0.05)
    Constant(p=0.05)
    """
    if isinstance(data, Schedule):
        return data
    if not isinstance(data, Mapping):
        if isinstance(data, (int, float, str)) and not isinstance(data, bool):
            return Constant(data)  # type: ignore[arg-type]
        raise ValueError(f"{data!r} is not a schedule; expected a rate or a mapping with a 'shape' key")
    data = dict(data)
    if "shape" not in data:
        raise ValueError(f"shape: missing; valid shapes: {', '.join(s.value for s in Shape)}")
    cls = _SHAPE_CLASSES[_shape_named(data.pop("shape"))]
    valid = _parameter_names(cls)
    for key in data:
        if key not in valid:
            raise ValueError(f"{key}: unknown parameter of shape {cls.shape.value!r}; valid parameters: "
                             f"{', '.join(valid)}")
    try:
        return cls(**data)
    except TypeError:
        missing = [name for name in valid if name not in data]
        raise ValueError(f"{missing[0]}: missing parameter of shape {cls.shape.value!r}; "
                         f"parameters: {', '.join(valid)}") from None


def schedule_from_string(text: str) -> Schedule:
    """One schedule from its compact form (see :meth:`ScheduleSet.parse` and dropout_tune.schedule_text).

    >>> schedule_from_string("early:0.1:until=0.3:ramp=linear")
    Early(p=0.1, until=0.3, ramp=<Ramp.LINEAR: 'linear'>)
    >>> schedule_from_string("piecewise:0.1@0:0@0.5")
    Piecewise(points=((0.0, 0.1), (0.5, 0.0)))
    """
    return schedule_from_dict(parse_schedule(text, _SHAPE_PARAMETERS))


ScheduleLike = Union[Schedule, Mapping[str, Any], float, str]


#: Per-role options a schedule entry may carry besides its shape: the mask kind and the depth profile
#: (``hidden=early:0.1:until=0.3:mask=per_sequence``, ``{"shape": "early", ..., "mask": "per_sequence"}``). A schedule
#: changes the rate; the mask and depth stay.
SITE_OPTIONS = ("mask", "depth")


def _split_options(value: Any) -> tuple[Any, dict[str, str]]:
    """A role's schedule without its :data:`SITE_OPTIONS`, and those options.

    >>> _split_options("early:0.1:until=0.3:mask=token")
    ('early:0.1:until=0.3', {'mask': 'token'})
    """
    if isinstance(value, Mapping):
        rest = {k: v for k, v in value.items() if k not in SITE_OPTIONS}
        return rest, {k: str(value[k]) for k in SITE_OPTIONS if value.get(k) is not None}
    if isinstance(value, str) and ":" in value:
        parts = value.split(":")
        options = {part.partition("=")[0].strip(): part.partition("=")[2].strip() for part in parts
                   if part.partition("=")[0].strip() in SITE_OPTIONS}
        return ":".join(p for p in parts if p.partition("=")[0].strip() not in SITE_OPTIONS), options
    return value, {}


class ScheduleSet:
    """A schedule per role; roles not in the set are left as they are. A role's entry may also name its mask
    kind and depth profile (:data:`SITE_OPTIONS`), which every step keeps.

    Build it from the dict form (Python or YAML), the compact string, or :class:`Schedule` objects:

    >>> s = ScheduleSet({"attention": 0.1, "hidden": Early(0.1, until=0.3)})
    >>> s == ScheduleSet.parse("attention=0.1,hidden=early:0.1:0.3")
    True
    >>> s.rates(0.5)
    {'attention': 0.1, 'hidden': 0.0}
    >>> s.to_string()
    'attention=0.1,hidden=early:p=0.1:until=0.3:ramp=constant'
    """

    def __init__(self, schedules: Mapping[str, ScheduleLike]):
        if not isinstance(schedules, Mapping):
            raise ValueError(f"schedule set must map role to schedule, got {type(schedules).__name__}")
        #: Roles named explicitly (not only through "all"): a model lacking one of them is worth a warning.
        self.explicit_roles = tuple(role for role in ROLES if role in schedules)
        built: dict[str, Schedule] = {}
        options: dict[str, dict[str, str]] = {}
        for role, value in expand_all(schedules).items():  # like DropoutSpec: "all" covers the roles not named
            if isinstance(value, bool) or not isinstance(value, (Schedule, Mapping, str, int, float)):
                raise ValueError(f"{role}: {value!r} is not a schedule; expected a rate, a mapping with a "
                                 f"'shape' key, or a compact string such as 'early:0.1:until=0.3'")
            value, found = _split_options(value)
            try:
                built[role] = schedule_from_string(value) if isinstance(value, str) else schedule_from_dict(value)
            except ValueError as err:
                raise ValueError(f"{role}.{err}") from None
            if found:
                options[role] = found
        if not built:
            raise ValueError("empty schedule set; expected at least one role, e.g. {'hidden': 0.1}")
        self._schedules = built  # in ROLES order, from expand_all: logs, plots and to_dict are stable
        self._options = options
        self.spec_at_rates({role: 0.0 for role in built})  # an unknown mask or depth fails here, not mid-training

    @classmethod
    def from_dict(cls, data: Mapping[str, ScheduleLike]) -> "ScheduleSet":
        """From ``{"hidden": {"shape": "early", "p": 0.1, "until": 0.3}, "attention": 0.1}``."""
        return cls(data)

    @classmethod
    def parse(cls, text: str) -> "ScheduleSet":
        """From the compact form ``ROLE=SCHEDULE[,ROLE=SCHEDULE...]``.

        ``SCHEDULE`` is a bare rate (constant) or ``SHAPE[:ARG...]``; each ``ARG`` is ``NAME=VALUE`` or a value
        taken in the shape's parameter order; ``piecewise`` takes ``P@PROGRESS`` points. An entry without
        ``ROLE=`` (or ``all=``) applies to every role not named elsewhere.

        >>> ScheduleSet.parse("off_after:0.1:0.5,attention=0.1").rates(0.5)["hidden"]
        0.0

        >>> ScheduleSet.parse("hidden=off_after:0.1:at=0.8").rates_at(8, 10)
        {'hidden': 0.0}
        >>> ScheduleSet.parse("hidden=sigmoid:0.1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: hidden.shape: unknown schedule shape 'sigmoid'; valid shapes: constant, linear, cosine, ...
        """
        return cls(parse_schedule_set(text, _SHAPE_PARAMETERS))

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> "ScheduleSet":
        """From a YAML or JSON file holding the dict form, at top level or under a ``dropout_schedule`` key."""
        import yaml  # YAML is a superset of JSON, so one loader reads both

        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if isinstance(data, Mapping) and "dropout_schedule" in data:
            data = data["dropout_schedule"]
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping of role to schedule, got {type(data).__name__}")
        return cls(data)

    @classmethod
    def coerce(cls, value: Union["ScheduleSet", Mapping[str, ScheduleLike], str, float]) -> "ScheduleSet":
        """Accept a set, the dict form, the compact string, or a number (that constant for every role)."""
        if isinstance(value, ScheduleSet):
            return value
        if isinstance(value, Mapping):
            return cls(value)
        if isinstance(value, str):
            return cls.parse(value)
        return cls({ALL: value})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The dict form; ``ScheduleSet.from_dict(s.to_dict()) == s``."""
        return {role: {**schedule.to_dict(), **self._options.get(role, {})}
                for role, schedule in self._schedules.items()}

    def to_string(self) -> str:
        """The compact form; ``ScheduleSet.parse(s.to_string()) == s``."""
        return ",".join(f"{role}=" + ":".join([schedule.to_string(), *(f"{k}={v}" for k, v in
                                                                       self._options.get(role, {}).items())])
                        for role, schedule in self._schedules.items())

    def options(self, role: str) -> dict[str, str]:
        """The mask kind and depth profile the role's entry names (empty when none)."""
        return dict(self._options.get(role, {}))

    def spec_at_rates(self, rates: Mapping[str, float]):
        """A :class:`~dropout_tune.spec.DropoutSpec` of ``rates`` with each role's mask and depth: what one step
        applies.

        >>> ScheduleSet.parse("hidden=linear:0.1:0:mask=token").spec_at_rates({"hidden": 0.05})
        DropoutSpec(hidden=0.05:mask=token)
        """
        from ..spec import DropoutSpec

        return DropoutSpec(**rates, masks={r: o["mask"] for r, o in self._options.items() if r in rates and "mask" in o},
                           depths={r: o["depth"] for r, o in self._options.items() if r in rates and "depth" in o})

    def rates(self, progress: float) -> dict[str, float]:
        """The rate of every role at ``progress`` in [0, 1]."""
        t = _check_progress(progress)
        return {role: schedule.rate(t) for role, schedule in self._schedules.items()}

    def rates_at(self, step: int, total_steps: int) -> dict[str, float]:
        """The rate of every role for the optimizer step starting at ``step`` of ``total_steps``."""
        return self.rates(progress_of(step, total_steps))

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._schedules)

    def items(self) -> list[tuple[str, Schedule]]:
        return list(self._schedules.items())

    def __getitem__(self, role: str) -> Schedule:
        return self._schedules[validate_role(role)]

    def __contains__(self, role: object) -> bool:
        return role in self._schedules

    def __iter__(self) -> Iterator[str]:
        return iter(self._schedules)

    def __len__(self) -> int:
        return len(self._schedules)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ScheduleSet) and self._schedules == other._schedules
                and self._options == other._options)

    def __repr__(self) -> str:
        return f"ScheduleSet({self.to_string()!r})"
