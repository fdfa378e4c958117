"""Dropout schedules: pure functions of training progress ``t`` in [0, 1] to a dropout rate ``p``.

Progress of step ``s`` out of ``N`` optimizer steps is ``t = s / N``: the rate used for the optimizer step that
takes ``global_step`` from ``s`` to ``s + 1``. The first step runs at ``t = 0``, the last at ``t = (N - 1) / N``;
``t = 1`` is the end of training. Steps past ``N`` keep the rate of ``t = 1``.

=============  =========================  ==========================================================
shape          parameters                 p(t)
=============  =========================  ==========================================================
constant       p                          p
linear         start, end                 start·(1 − t) + end·t
cosine         start, end                 end + (start − end)·(1 + cos πt) / 2
off_after      p, at                      p if t < at, else 0
early          p, until, ramp=constant    p if t < until, else 0
early          p, until, ramp=linear      p·(1 − t / until) if t < until, else 0
late           p, start                   0 if t < start, else p
curriculum     p, gamma=10                p·(1 − e^(−γt))  (keep-probability 1 − p(t) decays from 1 to 1 − p)
piecewise      points=[[t0, p0], ...]     linear between points; p0 before t0, pn after tn;
                                          a repeated t is a jump (the later point holds from t on)
=============  =========================  ==========================================================

``early`` and ``late`` follow Liu et al. (ICML 2023, "Dropout Reduces Underfitting"); ``curriculum`` follows
Morerio et al. (ICCV 2017, "Curriculum Dropout"), with γ per unit of training progress.

Cutoffs are half-open: the rate switches *at* the cutoff, so ``off_after(0.1, at=0.5)`` over 10 steps uses 0.1
for steps 0-4 and 0 for steps 5-9.

Example:
    >>> sched = ScheduleSet.parse("hidden=early:0.1:until=0.3,attention=0.1")
    >>> sched.rates_at(0, 10)
    {'attention': 0.1, 'hidden': 0.1}
    >>> sched.rates_at(3, 10)
    {'attention': 0.1, 'hidden': 0.0}
    >>> sched.to_dict()["hidden"]
    {'shape': 'early', 'p': 0.1, 'until': 0.3, 'ramp': 'constant'}
    >>> ScheduleSet.from_dict(sched.to_dict()) == sched
    True
    >>> ScheduleSet.parse("hidden=early:0.1:until=1.5")
    Traceback (most recent call last):
    ...
    ValueError: hidden.until: 1.5 is outside [0, 1]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, ClassVar, Iterator, Mapping, Union

from .roles import ALL, ROLES, expand_all, validate_rate, validate_role
from .schedule_text import format_schedule, parse_schedule, parse_schedule_set

__all__ = [
    "Shape", "Ramp", "Schedule", "Constant", "Linear", "Cosine", "OffAfter", "Early", "Late", "Curriculum",
    "Piecewise", "ScheduleSet", "progress_of", "constant", "linear", "cosine", "off_after", "early", "late",
    "curriculum", "piecewise",
]


class Shape(str, Enum):
    """The name of a schedule shape, as written in dicts, YAML and the compact string form."""

    CONSTANT = "constant"
    LINEAR = "linear"
    COSINE = "cosine"
    OFF_AFTER = "off_after"
    EARLY = "early"
    LATE = "late"
    CURRICULUM = "curriculum"
    PIECEWISE = "piecewise"


class Ramp(str, Enum):
    """How an ``early`` schedule leaves its rate: hold it then drop to 0, or decrease linearly to 0."""

    CONSTANT = "constant"
    LINEAR = "linear"


def progress_of(step: int, total_steps: int) -> float:
    """Progress ``step / total_steps`` of the optimizer step that starts at ``step``; clamped to 1 past the end.

    >>> progress_of(0, 8), progress_of(4, 8), progress_of(9, 8)
    (0.0, 0.5, 1.0)
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps: {total_steps!r} must be a positive integer")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: {step!r} must be a non-negative integer")
    return min(step / total_steps, 1.0)


def _check_progress(t: object) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
        raise ValueError(f"progress: {t!r} is outside [0, 1]")
    return float(t)


def _fraction(value: object, field: str) -> float:
    """A cutoff in [0, 1] (a fraction of training), or a ValueError naming ``field``."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: {value!r} is not a number; expected a fraction of training in [0, 1]")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {value!r} is not a number; expected a fraction of training in [0, 1]") from None
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise ValueError(f"{field}: {number!r} is outside [0, 1]")
    return number


@dataclass(frozen=True)
class Schedule:
    """Base of all shapes: a frozen, validated dataclass callable as ``schedule(progress) -> p``."""

    shape: ClassVar[Shape]

    def rate(self, t: float) -> float:  # pragma: no cover - every shape overrides it
        raise NotImplementedError

    def __call__(self, progress: float) -> float:
        return self.rate(_check_progress(progress))

    def at_step(self, step: int, total_steps: int) -> float:
        """The rate for the optimizer step starting at ``step`` of ``total_steps``."""
        return self.rate(progress_of(step, total_steps))

    @property
    def max_rate(self) -> float:
        """An upper bound of the rate over training (the ``p`` of shapes that have one)."""
        return getattr(self, "p")

    def _params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """``{"shape": ..., <parameters>}``, the form :meth:`ScheduleSet.from_dict` reads."""
        return {"shape": self.shape.value, **self._params()}

    def to_string(self) -> str:
        """The compact form, e.g. ``early:p=0.1:until=0.3``; a constant is just its rate."""
        return format_schedule(self.to_dict())


@dataclass(frozen=True)
class Constant(Schedule):
    """``p`` throughout.

    >>> Constant(0.1)(0.0), Constant(0.1)(1.0)
    (0.1, 0.1)
    """

    p: float
    shape: ClassVar[Shape] = Shape.CONSTANT

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", validate_rate(self.p, "p"))

    def rate(self, t: float) -> float:
        return self.p


@dataclass(frozen=True)
class _StartEnd(Schedule):
    start: float
    end: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", validate_rate(self.start, "start"))
        object.__setattr__(self, "end", validate_rate(self.end, "end"))

    @property
    def max_rate(self) -> float:
        return max(self.start, self.end)

    def _blend(self, weight_of_start: float) -> float:
        # start·w + end·(1 − w) is exact at both ends; clamping guards against a last-ulp overshoot.
        p = self.start * weight_of_start + self.end * (1.0 - weight_of_start)
        return min(max(p, min(self.start, self.end)), max(self.start, self.end))


@dataclass(frozen=True)
class Linear(_StartEnd):
    """``start`` at t=0 to ``end`` at t=1, linearly.

    >>> Linear(0.2, 0.0)(0.0), Linear(0.2, 0.0)(0.5), Linear(0.2, 0.0)(1.0)
    (0.2, 0.1, 0.0)
    """

    shape: ClassVar[Shape] = Shape.LINEAR

    def rate(self, t: float) -> float:
        return self._blend(1.0 - t)


@dataclass(frozen=True)
class Cosine(_StartEnd):
    """``start`` at t=0 to ``end`` at t=1 along a half cosine.

    >>> Cosine(0.2, 0.0)(0.0), Cosine(0.2, 0.0)(1.0), round(Cosine(0.2, 0.0)(0.5), 12)
    (0.2, 0.0, 0.1)
    """

    shape: ClassVar[Shape] = Shape.COSINE

    def rate(self, t: float) -> float:
        return self._blend(0.5 * (1.0 + math.cos(math.pi * t)))


@dataclass(frozen=True)
class OffAfter(Schedule):
    """``p`` until fraction ``at`` of training, then 0.

    >>> s = OffAfter(0.1, at=0.5)
    >>> s.at_step(4, 10), s.at_step(5, 10)
    (0.1, 0.0)
    """

    p: float
    at: float
    shape: ClassVar[Shape] = Shape.OFF_AFTER

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", validate_rate(self.p, "p"))
        object.__setattr__(self, "at", _fraction(self.at, "at"))

    def rate(self, t: float) -> float:
        return self.p if t < self.at else 0.0


@dataclass(frozen=True)
class Early(Schedule):
    """Early dropout: ``p`` until ``until``, then 0; with ``ramp="linear"`` it falls linearly to 0 at ``until``.

    >>> Early(0.1, until=0.3).at_step(2, 10), Early(0.1, until=0.3).at_step(3, 10)
    (0.1, 0.0)
    >>> Early(0.1, until=0.5, ramp="linear")(0.0), Early(0.1, until=0.5, ramp="linear")(0.25)
    (0.1, 0.05)
    >>> Early(0.1, until=0.5, ramp="linear")(0.5)
    0.0
    """

    p: float
    until: float
    ramp: Ramp = Ramp.CONSTANT
    shape: ClassVar[Shape] = Shape.EARLY

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", validate_rate(self.p, "p"))
        object.__setattr__(self, "until", _fraction(self.until, "until"))
        try:
            object.__setattr__(self, "ramp", Ramp(self.ramp))
        except ValueError:
            valid = ", ".join(r.value for r in Ramp)
            raise ValueError(f"ramp: {self.ramp!r} is not a ramp; valid ramps: {valid}") from None

    def rate(self, t: float) -> float:
        if t >= self.until:
            return 0.0
        if self.ramp is Ramp.LINEAR:
            return self.p * (1.0 - t / self.until)
        return self.p

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "ramp": self.ramp.value}


@dataclass(frozen=True)
class Late(Schedule):
    """Late dropout: 0 until ``start``, then ``p``.

    >>> Late(0.1, start=0.5).at_step(4, 10), Late(0.1, start=0.5).at_step(5, 10)
    (0.0, 0.1)
    """

    p: float
    start: float
    shape: ClassVar[Shape] = Shape.LATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", validate_rate(self.p, "p"))
        object.__setattr__(self, "start", _fraction(self.start, "start"))

    def rate(self, t: float) -> float:
        return self.p if t >= self.start else 0.0


@dataclass(frozen=True)
class Curriculum(Schedule):
    """Curriculum dropout: the keep-probability decays from 1 towards ``1 - p`` as ``e^(-gamma t)``.

    >>> Curriculum(0.2, gamma=10)(0.0)
    0.0
    >>> round(Curriculum(0.2, gamma=10)(0.1), 12) == round(0.2 * (1 - math.exp(-1)), 12)
    True
    """

    p: float
    gamma: float = 10.0
    shape: ClassVar[Shape] = Shape.CURRICULUM

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", validate_rate(self.p, "p"))
        try:
            gamma = float(self.gamma)
        except (TypeError, ValueError):
            gamma = float("nan")
        if isinstance(self.gamma, bool) or not (0.0 < gamma < math.inf):
            raise ValueError(f"gamma: {self.gamma!r} must be a positive, finite number")
        object.__setattr__(self, "gamma", gamma)

    def rate(self, t: float) -> float:
        return self.p * -math.expm1(-self.gamma * t)  # expm1: exact 0 at t=0, accurate for small γt


@dataclass(frozen=True)
class Piecewise(Schedule):
    """Linear between ``points`` ``[(t0, p0), (t1, p1), ...]`` (t non-decreasing); flat outside them. A ``t``
    given twice is a jump: the second point's rate holds from ``t`` on.

    >>> s = Piecewise([(0.0, 0.1), (0.5, 0.1), (0.5, 0.0), (1.0, 0.0)])
    >>> s(0.49), s(0.5), s(1.0)
    (0.1, 0.0, 0.0)
    >>> Piecewise([(0.0, 0.2), (0.5, 0.0)])(0.25)
    0.1
    """

    points: tuple[tuple[float, float], ...]
    shape: ClassVar[Shape] = Shape.PIECEWISE

    def __post_init__(self) -> None:
        if isinstance(self.points, (str, bytes)) or not hasattr(self.points, "__iter__"):
            raise ValueError(f"points: {self.points!r} is not a list of [progress, p] pairs")
        points = []
        for i, point in enumerate(self.points):
            if isinstance(point, (str, bytes)) or not hasattr(point, "__len__") or len(point) != 2:
                raise ValueError(f"points[{i}]: {point!r} is not a [progress, p] pair")
            points.append((_fraction(point[0], f"points[{i}].progress"), validate_rate(point[1], f"points[{i}].p")))
        if not points:
            raise ValueError("points: empty; give at least one [progress, p] pair")
        for i in range(1, len(points)):
            if points[i][0] < points[i - 1][0]:
                raise ValueError(f"points[{i}].progress: {points[i][0]!r} is before the previous point's "
                                 f"{points[i - 1][0]!r}; progress must be non-decreasing")
            if i >= 2 and points[i][0] == points[i - 2][0]:
                raise ValueError(f"points[{i}].progress: {points[i][0]!r} appears three times; a jump takes two")
        object.__setattr__(self, "points", tuple(points))

    def rate(self, t: float) -> float:
        points = self.points
        if t < points[0][0]:
            return points[0][1]
        # The last point at or before t; at a jump that is the second (later) point, so its rate holds from t on.
        i = max(k for k, (tk, _) in enumerate(points) if tk <= t)
        if i == len(points) - 1:
            return points[i][1]
        (t0, p0), (t1, p1) = points[i], points[i + 1]
        w = (t - t0) / (t1 - t0)  # t1 > t0: t is before the next point and not at a jump
        p = p0 * (1.0 - w) + p1 * w
        return min(max(p, min(p0, p1)), max(p0, p1))

    @property
    def max_rate(self) -> float:
        return max(p for _, p in self.points)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape.value, "points": [[t, p] for t, p in self.points]}


_SHAPE_CLASSES: dict[Shape, type[Schedule]] = {
    cls.shape: cls for cls in (Constant, Linear, Cosine, OffAfter, Early, Late, Curriculum, Piecewise)
}

# Lower-case constructors read like the shape names: early(0.1, until=0.3).
constant, linear, cosine, off_after = Constant, Linear, Cosine, OffAfter
early, late, curriculum, piecewise = Early, Late, Curriculum, Piecewise


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


class ScheduleSet:
    """A schedule per role; roles not in the set are left as they are.

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
        for role, value in expand_all(schedules).items():  # like DropoutSpec: "all" covers the roles not named
            if isinstance(value, bool) or not isinstance(value, (Schedule, Mapping, str, int, float)):
                raise ValueError(f"{role}: {value!r} is not a schedule; expected a rate, a mapping with a "
                                 f"'shape' key, or a compact string such as 'early:0.1:until=0.3'")
            try:
                built[role] = schedule_from_string(value) if isinstance(value, str) else schedule_from_dict(value)
            except ValueError as err:
                raise ValueError(f"{role}.{err}") from None
        if not built:
            raise ValueError("empty schedule set; expected at least one role, e.g. {'hidden': 0.1}")
        self._schedules = built  # in ROLES order, from expand_all: logs, plots and to_dict are stable

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
        return {role: schedule.to_dict() for role, schedule in self._schedules.items()}

    def to_string(self) -> str:
        """The compact form; ``ScheduleSet.parse(s.to_string()) == s``."""
        return ",".join(f"{role}={schedule.to_string()}" for role, schedule in self._schedules.items())

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
        return isinstance(other, ScheduleSet) and self._schedules == other._schedules

    def __repr__(self) -> str:
        return f"ScheduleSet({self.to_string()!r})"
