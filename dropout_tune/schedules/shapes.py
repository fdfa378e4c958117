"""The schedule shapes: frozen, validated dataclasses mapping training progress ``t`` in [0, 1] to a rate ``p``.

The formulas, the progress convention and the cutoff rule are in the package docstring (``dropout_tune.schedules``).

    >>> early(0.1, until=0.3).at_step(3, 10), Linear(0.2, 0.0)(0.5)
    (0.0, 0.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, ClassVar

from ..roles import validate_rate
from ..schedule_text import format_schedule

__all__ = [
    "Shape", "Ramp", "Schedule", "Constant", "Linear", "Cosine", "OffAfter", "Early", "Late", "Curriculum",
    "Piecewise", "progress_of", "constant", "linear", "cosine", "off_after", "early", "late", "curriculum",
    "piecewise",
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
