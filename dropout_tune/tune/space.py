"""The search space of ``dropout-tune tune`` and how one trial's values become a recipe.

A space maps parameter names to what is searched (YAML: a recipe's ``search:`` section, or a ``--space`` file):

- ``[low, high]`` or ``{low: 0.0, high: 0.3, log: false, step: null}``: a float range;
- a list of names (``[constant, early]``) or ``{choices: [...]}``: a categorical choice;
- a plain value: fixed (applied to every trial, not searched).

Parameters: ``rate`` (every dropout role the model has) or ``rate.<role>``; ``shape`` (one schedule shape for all
searched roles: constant, off_after, early, late, linear) with the shape's own parameter ``off_after.at``,
``early.until``, ``late.start`` or ``linear.end`` (the end rate as a fraction of the start rate), each searched only
in trials that pick its shape; ``label_smoothing``; ``weight_decay``; ``learning_rate``. Knobs the space leaves out
stay as the recipe sets them; a space that searches rates but names no ``shape`` searches constant rates.

Example:
    >>> space = SearchSpace.from_dict({"rate": [0.0, 0.3], "shape": ["constant", "early"]}, roles=("hidden",))
    >>> sorted(space.params)
    ['rate.hidden', 'shape']
    >>> schedule_for("early", 0.2, {"early.until": 0.4})
    {'shape': 'early', 'p': 0.2, 'until': 0.4}
    >>> SearchSpace.from_dict({"rate.hiden": [0, 0.3]}, roles=("hidden",))
    Traceback (most recent call last):
    ...
    ValueError: search.rate.hiden: unknown parameter; did you mean 'rate.hidden'? (valid: rate, rate.hidden, shape, ...)
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ..recipe import Recipe
from ..roles import ROLES

SHAPES = ("constant", "off_after", "early", "late", "linear")
#: the parameter each shape adds, and its value when the space does not search it
SHAPE_PARAMS = {"off_after": ("off_after.at", 0.7), "early": ("early.until", 0.3), "late": ("late.start", 0.5),
                "linear": ("linear.end", 0.0)}
#: parameter (or family) -> (lowest allowed, highest allowed, is the highest value excluded)
_BOUNDS = {"rate": (0.0, 1.0, True), "fraction": (0.0, 1.0, False), "label_smoothing": (0.0, 1.0, True),
           "weight_decay": (0.0, math.inf, False), "learning_rate": (0.0, math.inf, False)}
DEFAULT_RATE_RANGE = (0.0, 0.3)
DEFAULT_SHAPE_RANGES = {"off_after.at": (0.3, 0.9), "early.until": (0.1, 0.5), "late.start": (0.3, 0.8),
                        "linear.end": (0.0, 1.0)}


def _kind(name: str) -> str:
    if name == "rate" or name.startswith("rate."):
        return "rate"
    if name in DEFAULT_SHAPE_RANGES:
        return "fraction"
    return name


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) parameter."""

    name: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[tuple] = None
    fixed: Any = None

    @property
    def searched(self) -> bool:
        return self.fixed is None

    def suggest(self, trial) -> Any:
        """The value for ``trial`` (an Optuna trial, or anything with ``suggest_float`` / ``suggest_categorical``)."""
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def to_yaml_value(self) -> Any:
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _check_value(name: str, value: Any) -> Any:
    if name == "shape":
        if value not in SHAPES:
            raise ValueError(f"search.shape: {value!r} is not one of {', '.join(SHAPES)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"search.{name}: {value!r} is not a number")
    low, high, open_high = _BOUNDS[_kind(name)]
    value = float(value)
    if not (low <= value and (value < high if open_high else value <= high)) or math.isnan(value):
        upper = f"{high})" if open_high else f"{high}]"
        raise ValueError(f"search.{name}: {value!r} is outside [{low}, {upper}")
    return value


def parse_param(name: str, spec: Any) -> Param:
    """One entry of a space: ``[low, high]``, ``{low, high, log, step}``, a list of names, ``{choices}``, or a value.

    >>> parse_param("weight_decay", [0.0, 0.1])
    Param(name='weight_decay', low=0.0, high=0.1, log=False, step=None, choices=None, fixed=None)
    >>> parse_param("label_smoothing", [0.2, 0.1])
    Traceback (most recent call last):
    ...
    ValueError: search.label_smoothing: empty range [0.2, 0.1]; expected low < high
    """
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise ValueError(f"search.{name}: unknown key {sorted(unknown)[0]!r}; expected low, high, log, step "
                             f"or choices")
        if "choices" in spec:
            return _choices(name, spec["choices"])
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"search.{name}: a range needs both low and high")
        return _range(name, spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step"))
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"search.{name}: empty list; expected [low, high] or a list of choices")
        if all(isinstance(v, str) for v in spec):
            return _choices(name, spec)
        if len(spec) != 2:
            raise ValueError(f"search.{name}: {list(spec)!r} is not a range; expected [low, high], a list of "
                             f"names, or {{choices: [...]}}")
        return _range(name, spec[0], spec[1], False, None)
    if spec is None:
        raise ValueError(f"search.{name}: no value; expected [low, high], a list of choices or a fixed value")
    return Param(name, fixed=_check_value(name, spec))


def _choices(name: str, values: Any) -> Param:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"search.{name}: empty choices; expected at least one value")
    checked = tuple(_check_value(name, v) for v in values)
    if len(set(checked)) != len(checked):
        raise ValueError(f"search.{name}: choices {list(values)!r} repeat a value")
    return Param(name, choices=checked)


def _range(name: str, low: Any, high: Any, log: bool, step: Any) -> Param:
    if name == "shape":
        raise ValueError("search.shape: a shape is chosen from names, e.g. [constant, early], not a range")
    low, high = _check_value(name, low), _check_value(name, high)
    if not low < high:
        raise ValueError(f"search.{name}: empty range [{low}, {high}]; expected low < high")
    if log and low <= 0:
        raise ValueError(f"search.{name}: a log range needs low > 0, got {low}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ValueError(f"search.{name}: step {step!r} must be a positive number")
    return Param(name, low=low, high=high, log=log, step=None if step is None else float(step))


class SearchSpace:
    """Validated parameters by name (see the module docstring); ``roles`` are the dropout roles the model has."""

    def __init__(self, params: Mapping[str, Param], roles: Sequence[str]):
        self.params = dict(params)
        self.roles = tuple(roles)

    @staticmethod
    def valid_names(roles: Sequence[str]) -> list[str]:
        return (["rate", *(f"rate.{r}" for r in roles), "shape", *DEFAULT_SHAPE_RANGES, "label_smoothing",
                 "weight_decay", "learning_rate"])

    @classmethod
    def from_dict(cls, data: Any, roles: Sequence[str]) -> "SearchSpace":
        """Validate a space against the model's ``roles``; ``rate`` expands to every role, ``rate.<role>`` wins."""
        if not isinstance(data, Mapping) or not data:
            raise ValueError("search: expected a non-empty mapping of parameter to range, e.g. {rate: [0.0, 0.3]}")
        valid = cls.valid_names(roles)
        params: dict[str, Param] = {}
        for name in data:
            name = str(name)
            if name not in valid:
                if name.startswith("rate.") and name[5:] in ROLES:
                    raise ValueError(f"search.{name}: the model has no {name[5:]} dropout (its roles: "
                                     f"{', '.join(roles)})")
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"search.{name}: unknown parameter; {hint}(valid: {', '.join(valid[:3])}, ...)")
        for name, spec in data.items():
            if name == "rate":
                for role in roles:
                    if f"rate.{role}" not in data:
                        params[f"rate.{role}"] = _renamed(parse_param("rate", spec), f"rate.{role}")
            else:
                params[name] = parse_param(name, spec)
        return cls({n: params[n] for n in valid if n in params}, roles)

    @classmethod
    def default(cls, roles: Sequence[str], regression: bool = False) -> "SearchSpace":
        """Rates in [0, 0.3] for every role, the five shapes with their parameters, label smoothing in [0, 0.2]
        (not for regression) and weight decay in [0, 0.1]; on grids (rates 0.01, fractions 0.05) so that
        configurations read as people write them."""
        data: dict[str, Any] = {"rate": {"low": DEFAULT_RATE_RANGE[0], "high": DEFAULT_RATE_RANGE[1], "step": 0.01},
                                "shape": list(SHAPES)}
        data.update({name: {"low": low, "high": high, "step": 0.05}
                     for name, (low, high) in DEFAULT_SHAPE_RANGES.items()})
        if not regression:
            data["label_smoothing"] = {"low": 0.0, "high": 0.2, "step": 0.01}
        data["weight_decay"] = {"low": 0.0, "high": 0.1, "step": 0.005}
        return cls.from_dict(data, roles)

    def to_dict(self) -> dict[str, Any]:
        return {name: p.to_yaml_value() for name, p in self.params.items()}

    def fixed(self) -> dict[str, Any]:
        return {name: p.fixed for name, p in self.params.items() if not p.searched}

    def suggest(self, trial) -> dict[str, Any]:
        """Every value of one trial (define-by-run: a shape's parameter is drawn only when that shape is)."""
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if name in DEFAULT_SHAPE_RANGES:
                continue
            values[name] = param.suggest(trial)
        shape_param = SHAPE_PARAMS.get(values.get("shape", "constant"))
        if shape_param and shape_param[0] in self.params:
            values[shape_param[0]] = self.params[shape_param[0]].suggest(trial)
        return values

    def define_by_run(self, trial) -> dict[str, Any]:
        """For Ray's ``OptunaSearch(space=...)``: draw the searched values, return the fixed ones."""
        self.suggest(trial)
        return self.fixed()

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the searched parameters (for importances of results from any backend)."""
        return {name: p.distribution() for name, p in self.params.items() if p.searched}


def _renamed(param: Param, name: str) -> Param:
    return Param(name, param.low, param.high, param.log, param.step, param.choices, param.fixed)


def schedule_for(shape: str, p: float, values: Mapping[str, Any]) -> dict[str, Any]:
    """One role's schedule (dict form) for ``shape`` at rate ``p``; the shape's parameter comes from ``values``."""
    name, default = SHAPE_PARAMS.get(shape, (None, None))
    extra = float(values.get(name, default)) if name else None
    if shape == "constant":
        return {"shape": "constant", "p": p}
    if shape == "off_after":
        return {"shape": "off_after", "p": p, "at": extra}
    if shape == "early":
        return {"shape": "early", "p": p, "until": extra}
    if shape == "late":
        return {"shape": "late", "p": p, "start": extra}
    if shape == "linear":
        return {"shape": "linear", "start": p, "end": round(p * extra, 6)}
    raise ValueError(f"shape {shape!r} is not one of {', '.join(SHAPES)}")


def apply_params(recipe: Recipe, values: Mapping[str, Any], roles: Optional[Sequence[str]] = None) -> Recipe:
    """``recipe`` with one trial's values: a schedule for the searched roles (other roles keep theirs), label
    smoothing, weight decay and learning rate. With ``roles`` (the model's), the recipe's schedule entries for other
    roles (an ``all:`` expanded) are dropped, so the rewritten schedule names only roles the model has.

    >>> r = apply_params(Recipe(), {"rate.hidden": 0.2, "shape": "late", "late.start": 0.6, "weight_decay": 0.01})
    >>> r.dropout.parsed_schedule().to_dict()["hidden"], r.regularization.weight_decay
    ({'shape': 'late', 'p': 0.2, 'start': 0.6}, 0.01)
    """
    data = recipe.to_dict()
    rates = {name[5:]: float(v) for name, v in values.items() if name.startswith("rate.")}
    shape = values.get("shape")
    if rates or shape:
        existing = recipe.dropout.parsed_schedule()
        schedule: dict[str, Any] = existing.to_dict() if existing is not None else {}
        if roles is not None:
            schedule = {role: s for role, s in schedule.items() if role in roles}
        if not rates:  # a shape searched alone reshapes the recipe's own rates
            rates = ({role: existing[role].max_rate for role in schedule} if existing is not None
                     else dict(recipe.dropout.parsed_spec().items()))
            if not rates:
                raise ValueError("search.shape: searched without rates, and the recipe sets no dropout rate to "
                                 "reshape; add e.g. rate: [0.0, 0.3]")
        for role, p in rates.items():
            schedule[role] = schedule_for(shape or "constant", p, values)
        data["dropout"]["schedule"] = schedule
    for name, (section, key) in {"label_smoothing": ("regularization", "label_smoothing"),
                                 "weight_decay": ("regularization", "weight_decay"),
                                 "learning_rate": ("optim", "learning_rate")}.items():
        if name in values:
            data[section][key] = float(values[name])
    return Recipe.from_dict(data)


def model_roles(recipe: Recipe) -> tuple[str, ...]:
    """The dropout roles the recipe's model can have: those it has sites for (read from a weightless copy built on
    the meta device), those its family injects (a decoder's ``embedding``, ``hidden``, ``activation``), and ``lora``
    when the recipe adds LoRA adapters."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from ..injection import injectable_roles
    from ..loading import resolve_model_path
    from ..patching import inspect_dropout

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(recipe.model.name))
    except OSError as err:
        raise ValueError(f"model.name: cannot read the config of {recipe.model.name!r} "
                         f"({str(err).splitlines()[0]})") from None
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    found = {site.role for site in inspect_dropout(model) if site.role} | set(injectable_roles(model))
    if recipe.model.lora is not None:
        found.add("lora")
    return tuple(role for role in ROLES if role in found)
