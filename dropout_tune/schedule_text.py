"""The compact text form of schedules, for command lines: parsing to the dict form and formatting back.

    SET      := ENTRY ("," ENTRY)*
    ENTRY    := ROLE "=" SCHEDULE  |  SCHEDULE          (no ROLE= means every role not named elsewhere, like all=)
    SCHEDULE := RATE  |  SHAPE (":" ARG)*               (a bare rate is a constant)
    ARG      := NAME "=" VALUE  |  VALUE                (bare values fill the shape's parameters in order)
    piecewise takes points instead: piecewise:P@T:P@T... (rate P from progress T)

This module knows the grammar only: the shapes and their parameter names come in as data (shape name -> parameter
names, in order), and dropout_tune.schedules turns the dict form into schedule objects and validates the values.

Example:
    >>> SHAPES = {"constant": ["p"], "early": ["p", "until", "ramp"], "piecewise": ["points"]}
    >>> parse_schedule_set("hidden=early:0.1:until=0.3,attention=0.1", SHAPES)
    {'hidden': 'early:0.1:until=0.3', 'attention': '0.1'}
    >>> parse_schedule("early:0.1:until=0.3", SHAPES)
    {'shape': 'early', 'p': '0.1', 'until': '0.3'}
    >>> format_schedule({"shape": "early", "p": 0.1, "until": 0.3, "ramp": "constant"})
    'early:p=0.1:until=0.3:ramp=constant'
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .roles import is_number, parse_assignments

ShapeParameters = Mapping[str, Sequence[str]]


def parse_schedule(text: str, shapes: ShapeParameters) -> dict[str, Any]:
    """One schedule's compact form -> its dict form, values still text (a bare rate is a constant).

    An unknown shape comes back as {"shape": name} for the dict reader to reject with the list of valid shapes.

    >>> parse_schedule("0.05", {"constant": ["p"]})
    {'shape': 'constant', 'p': '0.05'}
    >>> parse_schedule("piecewise:0.1@0:0@0.5", {"piecewise": ["points"]})
    {'shape': 'piecewise', 'points': [('0', '0.1'), ('0.5', '0')]}
    """
    text = text.strip()
    name, *args = [part.strip() for part in text.split(":")]
    if not name:
        raise ValueError(f"shape: empty in {text!r}; expected a rate or SHAPE:ARG:..., e.g. early:0.1:until=0.3")
    if not args and is_number(name):
        return {"shape": "constant", "p": name}
    if name not in shapes:
        return {"shape": name}
    if name == "piecewise":
        points = []
        for arg in args:
            p, at, t = arg.partition("@")
            if not at:
                raise ValueError(f"points: cannot parse {arg!r} in {text!r}; expected P@PROGRESS, e.g. 0.1@0.5")
            points.append((t, p))
        return {"shape": name, "points": points}
    parameters = list(shapes[name])
    params: dict[str, Any] = {}
    for i, arg in enumerate(args):
        key, sep, value = arg.partition("=")
        if not sep:  # positional: in the order of the shape's parameters
            if i >= len(parameters):
                raise ValueError(f"arguments: too many in {text!r}; {name} takes {', '.join(parameters)}")
            key, value = parameters[i], arg
        key = key.strip()
        if key in params:
            raise ValueError(f"{key}: given twice in {text!r}")
        params[key] = value.strip()
    return {"shape": name, **params}


def parse_schedule_set(text: str, shapes: ShapeParameters) -> dict[str, str]:
    """ROLE=SCHEDULE,... -> {role or "all": schedule text}; an entry without ROLE= goes to "all".

    >>> parse_schedule_set("off_after:0.1:0.5,attention=0.1", {"off_after": ["p", "at"]})
    {'all': 'off_after:0.1:0.5', 'attention': '0.1'}
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty schedule; expected e.g. 'hidden=early:0.1:until=0.3,attention=0.1'")

    def starts_like_a_schedule(entry: str) -> bool:
        head = entry.split(":")[0].strip()
        return is_number(head) or head in shapes

    return parse_assignments(text, "schedule", "ROLE=SCHEDULE, e.g. hidden=early:0.1:until=0.3",
                             starts_like_a_schedule)


def format_schedule(data: Mapping[str, Any]) -> str:
    """The compact form of a schedule's dict form: a constant is its rate, piecewise lists P@T points, any other
    shape names every parameter.

    >>> format_schedule({"shape": "constant", "p": 0.1}), format_schedule({"shape": "late", "p": 0.1, "start": 0.5})
    ('0.1', 'late:p=0.1:start=0.5')
    >>> format_schedule({"shape": "piecewise", "points": [[0.0, 0.1], [1.0, 0.0]]})
    'piecewise:0.1@0:0@1'
    """
    shape = data["shape"]
    if shape == "constant":
        return _number(data["p"])
    if shape == "piecewise":
        return "piecewise:" + ":".join(f"{_number(p)}@{_number(t)}" for t, p in data["points"])
    return ":".join([shape, *(f"{name}={_number(value)}" for name, value in data.items() if name != "shape")])


def _number(value: object) -> str:
    """Shortest text for a parameter value (0.1, 10) in the compact form."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
