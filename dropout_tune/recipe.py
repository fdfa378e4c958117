"""Training recipes: typed dataclasses that YAML only fills (``yaml.safe_load``), with ``key=value`` overrides.

Unknown keys and wrong types are errors naming the key, with a close-match suggestion.

Example:
    >>> recipe = Recipe.from_dict({"name": "demo", "training": {"epochs": 2}}, overrides=["data.max_train=100"])
    >>> recipe.training.epochs, recipe.data.max_train, recipe.model.name
    (2.0, 100, 'minilm')
    >>> Recipe.from_dict({"training": {"epoch": 2}})
    Traceback (most recent call last):
    ...
    ValueError: training.epoch: unknown key; did you mean 'epochs'? (a recipe key or a TrainingArguments field)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from .files import looks_like_path
from .regularization import RegularizationConfig
from .roles import validate_rate
from .schedules import ScheduleSet
from .spec import DropoutSpec

SpecValue = Union[str, float, dict, None]
#: How MC dropout samples (dropout_tune.mc, which reads them from here: the config layer imports no engine).
MC_MODES = ("loop", "replicate", "trunk")


class _StrictBoolLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans and floats: only true/false are booleans, so
    ``eval_strategy: no`` stays the string "no" (YAML 1.1 would read it as False), and ``2e-5``, ``1E-4``, ``.5``
    are floats (YAML 1.1 wants a dot before an exponent and reads ``2e-5`` as a string)."""


#: A YAML 1.2 (core schema) float that is not an integer: a dot or an exponent is needed, so ``3`` stays an int.
FLOAT_PATTERN = re.compile(r"""^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
                                |[-+]?[0-9]+[eE][-+]?[0-9]+
                                |[-+]?\.(?:inf|Inf|INF)
                                |\.(?:nan|NaN|NAN))$""", re.X)

_REPLACED_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
_StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictBoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_StrictBoolLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_PATTERN, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    r"""``yaml.safe_load`` with YAML 1.2 booleans and floats.

    >>> load_yaml("a: no\nb: true\nc: 2e-5\nd: 3")
    {'a': 'no', 'b': True, 'c': 2e-05, 'd': 3}
    """
    return yaml.load(text, Loader=_StrictBoolLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Union[str, os.PathLike], what: str = "") -> Any:
    """A YAML file's content (:func:`load_yaml`); a syntax error or a file that is not text is a one-line
    ``ValueError`` naming ``what`` (e.g. ``--space``), the file and the line."""
    label = f"{what} {path}".strip()
    try:
        return load_yaml(Path(path).read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"{label}: not valid YAML: {err.problem or err.context}{where}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{label}: not valid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{label}: not a text file") from None


def _choice(value: str, choices: tuple[str, ...], field_name: str) -> str:
    if value not in choices:
        raise ValueError(f"{field_name}: {value!r} is not one of {', '.join(choices)}")
    return value


def _positive(value: float, field_name: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{field_name}: {value!r} must be {'>= 0' if allow_zero else '> 0'}")


@dataclass
class LoraSection:
    """PEFT LoRA adapters; the ``lora`` dropout role follows ``dropout`` here and the ``lora`` schedule."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])

    def __post_init__(self) -> None:
        _positive(self.r, "model.lora.r")
        validate_rate(self.dropout, "model.lora.dropout")


@dataclass
class ModelSection:
    name: str = "minilm"  # hub id, local directory, or "minilm" (embedded all-MiniLM-L6-v2)
    attn_implementation: str = "sdpa"
    lora: Optional[LoraSection] = None

    def __post_init__(self) -> None:
        _choice(self.attn_implementation, ("eager", "sdpa"), "model.attn_implementation")


@dataclass
class DataSection:
    task: str = "rotten_tomatoes"  # a registered task (see `dropout-tune data list`) or a local CSV/JSON/parquet
    data_dir: Optional[str] = None  # local GLUE-format files
    text_columns: Optional[list[str]] = None
    label_column: Optional[str] = None
    max_train: Optional[int] = None
    max_eval: Optional[int] = None
    max_length: int = 64

    def resolve_paths(self, folder: Path) -> None:
        """Read relative ``task`` / ``data_dir`` paths from ``folder`` (the recipe's) where they are found there,
        else from the working directory; a path found in neither is an error naming both folders."""
        for name in ("task", "data_dir"):
            value = getattr(self, name)
            if value is None or Path(value).expanduser().is_absolute():
                continue
            beside = Path(folder) / value
            if beside.exists():
                setattr(self, name, str(beside.resolve()))
            elif (name == "data_dir" or looks_like_path(value)) and not Path(value).exists():
                raise ValueError(f"data.{name}: {value!r} is in neither the recipe's folder {Path(folder).resolve()} "
                                 f"nor the working directory {Path.cwd()}")

    def __post_init__(self) -> None:
        _positive(self.max_length, "data.max_length")
        for name in ("max_train", "max_eval"):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), f"data.{name}")


@dataclass
class DropoutSection:
    """``spec``: rates at load time (``"attention=0.1,hidden=0.1"``, a number, or a mapping);
    ``schedule``: rates over training, per role (dict form or compact string; see docs/schedules.md)."""

    spec: SpecValue = None
    schedule: SpecValue = None

    def __post_init__(self) -> None:
        try:
            self.parsed_spec()
        except ValueError as err:
            raise ValueError(f"dropout.spec: {err}") from None
        try:
            self.parsed_schedule()
        except ValueError as err:
            raise ValueError(f"dropout.schedule: {err}") from None

    def parsed_spec(self) -> DropoutSpec:
        return DropoutSpec.coerce(self.spec)

    def parsed_schedule(self) -> Optional[ScheduleSet]:
        return None if self.schedule is None else ScheduleSet.coerce(self.schedule)


@dataclass
class OptimSection:
    learning_rate: float = 5e-5
    optimizer: str = "adamw_torch"
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _positive(self.learning_rate, "optim.learning_rate")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio: {self.warmup_ratio!r} is outside [0, 1)")
        _choice(self.optimizer, ("adamw_torch", "adamw_torch_fused", "sgd", "adafactor"), "optim.optimizer")
        _choice(self.lr_scheduler, ("linear", "cosine", "constant", "constant_with_warmup", "polynomial"),
                "optim.lr_scheduler")


#: ``TrainingArguments`` names accepted under ``training:`` for the recipe's own keys (moved there on load).
TRAINING_ARGUMENT_NAMES = {
    "num_train_epochs": "training.epochs",
    "per_device_train_batch_size": "training.batch_size",
    "per_device_eval_batch_size": "training.eval_batch_size",
    "learning_rate": "optim.learning_rate",
    "optim": "optim.optimizer",
    "lr_scheduler_type": "optim.lr_scheduler",
    "warmup_ratio": "optim.warmup_ratio",
    "max_grad_norm": "optim.max_grad_norm",
    "weight_decay": "regularization.weight_decay",
    "label_smoothing_factor": "regularization.label_smoothing",
}
#: ``TrainingArguments`` the recipe derives from its own keys, so they are not passed through: the key to set instead.
DERIVED_TRAINING_ARGUMENTS = {
    "save_strategy": "training.save_checkpoints (checkpoints follow the evaluation cadence)",
    "save_steps": "training.save_checkpoints (checkpoints follow the evaluation cadence)",
    "warmup_steps": "optim.warmup_ratio",
    "average_tokens_across_devices": "nothing: it stays off so that each rank's loss is its own mean (see train.py)",
}


def training_argument_fields() -> list[str]:
    """The field names of the installed ``transformers.TrainingArguments`` (imported only when a recipe names a key
    that is not the recipe's own, so ordinary recipes load without transformers)."""
    from transformers import TrainingArguments

    return [f.name for f in dataclasses.fields(TrainingArguments) if f.init]


@dataclass
class TrainingSection:
    """The run's length, batches, evaluation and output. ``TrainingArguments`` names are accepted too: those the
    recipe has its own key for (``num_train_epochs`` is ``epochs``, ``learning_rate`` is ``optim.learning_rate``;
    :data:`TRAINING_ARGUMENT_NAMES`) are moved there, any other field (``gradient_checkpointing``,
    ``save_total_limit``, ``load_best_model_at_end`` ...) goes to ``trainer_args`` and on to the Trainer."""

    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 16  # per device
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    seed: int = 42
    output_dir: str = "runs/{name}"  # {name} and {seed} are filled in
    eval_strategy: str = "epoch"
    eval_steps: Optional[int] = None
    logging_steps: int = 10
    save_checkpoints: bool = False  # Trainer checkpoints (for resume) every epoch / eval_steps
    resume_from_checkpoint: Optional[str] = None  # a checkpoint dir; one inside output_dir continues that run
    overwrite: bool = False  # replace a run already in output_dir (refused otherwise)
    bf16: bool = False
    torch_compile: bool = False  # TrainingArguments(torch_compile=...); schedules cost no recompile
    #: where the Trainer logs: none, all, or integrations (tensorboard, wandb, trackio, ...)
    report_to: list[str] = field(default_factory=lambda: ["none"])
    #: stop after this many evaluations without improvement of the task's main metric (EarlyStoppingCallback)
    early_stopping_patience: Optional[int] = None
    early_stopping_threshold: float = 0.0
    #: other TrainingArguments fields, passed to the Trainer as they are
    trainer_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive(self.epochs, "training.epochs")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "logging_steps"):
            _positive(getattr(self, name), f"training.{name}")
        if not 0 <= self.seed < 2**32:  # NumPy's seeds (set by the Trainer) are 32-bit
            raise ValueError(f"training.seed: {self.seed} is outside [0, 2**32)")
        _choice(self.eval_strategy, ("no", "steps", "epoch"), "training.eval_strategy")
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("training.eval_steps: required when training.eval_strategy is 'steps'")
        if self.early_stopping_patience is not None:
            _positive(self.early_stopping_patience, "training.early_stopping_patience")
            if self.eval_strategy == "no":
                raise ValueError("training.early_stopping_patience: needs evaluations; set training.eval_strategy "
                                 "to epoch or steps")
        _positive(self.early_stopping_threshold, "training.early_stopping_threshold", allow_zero=True)
        if self.trainer_args:
            _check_trainer_args(self.trainer_args)
        if self.trainer_args.get("load_best_model_at_end") and not self.save_checkpoints:
            raise ValueError("training.load_best_model_at_end: the best model is loaded from a checkpoint; set "
                             "training.save_checkpoints: true")


def _check_trainer_args(args: Mapping[str, Any]) -> None:
    own = [f.name for f in dataclasses.fields(TrainingSection)]
    valid = training_argument_fields()
    for key in args:
        where = f"training.trainer_args.{key}"
        if key in own or key in TRAINING_ARGUMENT_NAMES:
            raise ValueError(f"{where}: the recipe's own key; set {TRAINING_ARGUMENT_NAMES.get(key, f'training.{key}')}")
        if key in DERIVED_TRAINING_ARGUMENTS:
            raise ValueError(f"{where}: set by the recipe from its own keys; set {DERIVED_TRAINING_ARGUMENTS[key]}")
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{where}: not a TrainingArguments field; {hint}(e.g. {', '.join(valid[:3])}, ...)")


def _training_argument_names(data: dict[str, Any]) -> dict[str, Any]:
    """Move ``TrainingArguments`` names under ``training:`` to the recipe's own keys (:data:`TRAINING_ARGUMENT_NAMES`)
    or into ``training.trainer_args``; an unknown key gets a close match among both kinds of names."""
    training = data.get("training")
    if not isinstance(training, Mapping):
        return data
    own = [f.name for f in dataclasses.fields(TrainingSection)]
    foreign = [key for key in training if key not in own]
    if not foreign:
        return data
    data, training = dict(data), dict(training)
    data["training"] = training
    given = training.get("trainer_args")
    if given is not None and not isinstance(given, Mapping):
        raise ValueError(f"training.trainer_args: expected a mapping of TrainingArguments fields, got {given!r}")
    passed = dict(given or {})
    for key in foreign:
        value = training.pop(key)
        if key in TRAINING_ARGUMENT_NAMES:
            section, name = TRAINING_ARGUMENT_NAMES[key].split(".")
            target = training if section == "training" else data.setdefault(section, {})
            if not isinstance(target, dict):
                raise ValueError(f"{section}: expected a mapping (a section), got {target!r}")
            target = data[section] = dict(target) if section != "training" else target
            if name in target and target[name] != value:
                raise ValueError(f"training.{key}: is {section}.{name}, which the recipe sets to {target[name]!r}; "
                                 f"give one of them")
            target[name] = value
        elif key in DERIVED_TRAINING_ARGUMENTS:
            raise ValueError(f"training.{key}: set by the recipe from its own keys; set "
                             f"{DERIVED_TRAINING_ARGUMENTS[key]}")
        elif str(key) in training_argument_fields():
            passed[key] = value
        else:
            names = own + list(TRAINING_ARGUMENT_NAMES) + training_argument_fields()
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"training.{key}: unknown key; {hint}(a recipe key or a TrainingArguments field)")
    if passed:
        training["trainer_args"] = passed
    return data


@dataclass
class MCEvalSection:
    """MC-dropout evaluation of the final model on the test split (``dropout-tune mc-eval`` with these options)."""

    enabled: bool = False
    samples: int = 20
    mode: str = "loop"
    stochastic_layers: Optional[int] = None
    #: The roles to sample and their rates, e.g. "attention=0.1,hidden=0.1" (only these roles are stochastic).
    #: None: each role at its nominal training rate (its schedule's peak, else dropout.spec, else the model's).
    spec: SpecValue = None

    def __post_init__(self) -> None:
        _positive(self.samples, "mc_eval.samples")
        _choice(self.mode, MC_MODES, "mc_eval.mode")
        try:
            DropoutSpec.coerce(self.spec)
        except ValueError as err:
            raise ValueError(f"mc_eval.spec: {err}") from None


@dataclass
class Recipe:
    """A whole fine-tuning run."""

    name: str = "run"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    dropout: DropoutSection = field(default_factory=DropoutSection)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    mc_eval: MCEvalSection = field(default_factory=MCEvalSection)
    #: the search space of ``dropout-tune tune`` (see docs/tune.md); training ignores it
    search: Optional[dict[str, Any]] = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], overrides: Optional[list[str]] = None,
                  folder: Optional[Path] = None) -> "Recipe":
        """``folder``: the recipe file's, against which relative data paths are read (see
        :meth:`DataSection.resolve_paths`)."""
        data = _training_argument_names(apply_overrides(dict(data or {}), overrides or []))
        recipe = _fill(cls, data, "")
        if folder is not None:
            recipe.data.resolve_paths(folder)
        return recipe

    @classmethod
    def from_yaml(cls, path: Union[str, os.PathLike], overrides: Optional[list[str]] = None) -> "Recipe":
        """Load a recipe file; ``overrides`` are ``dotted.key=value`` strings (values parsed as YAML)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe {str(path)!r} does not exist")
        data = read_yaml_file(path)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a recipe is a mapping of sections, got {type(data).__name__}")
        data = dict(data)
        data.setdefault("name", path.stem)
        return cls.from_dict(data, overrides, folder=path.parent)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def output_dir(self) -> Path:
        return Path(self.training.output_dir.format(name=self.name, seed=self.training.seed))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to the raw dict (values parsed as YAML 1.2 scalars).

    >>> apply_overrides({"training": {"epochs": 1}}, ["training.epochs=3", "name=x"])
    {'training': {'epochs': 3}, 'name': 'x'}
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected KEY=VALUE, e.g. training.epochs=2")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
            dict: "a mapping"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else
                         f"{where}: {value!r} is not any of {', '.join(_type_name(o) for o in options)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping (a section), got {value!r}")
        return _fill(tp, value, f"{where}.")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and FLOAT_PATTERN.match(value.strip()):
            value = load_yaml(value)  # "2e-5" given as a string (a quoted YAML value, a Python dict)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _fill(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise ValueError(f"{prefix}{key}: unknown key; {hint}(valid: {shown})")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        message = str(err)
        # nested validators name their own field; prefix the section when they did not
        raise ValueError(message if "." in message.split(":")[0] or not prefix else f"{prefix}{message}") from None
