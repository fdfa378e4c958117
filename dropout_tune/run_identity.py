"""What makes two runs "the same run": one definition for ``compare``, the job executor and the ``tune`` study.

A run's identity is its resolved recipe (schedule and spec in canonical form, so two spellings of one schedule are
equal) without the settings that cannot change what is trained: :data:`RESULT_NEUTRAL_KEYS` (the run's name, where
it is written, whether an old run there may be replaced, and the checkpoint it resumes from: resuming is exact).

Before a run trains into a folder, :func:`run_dir_state` says what the folder holds, and :func:`plan_run_dir`
decides, before anything trains, whether that run is reused, trained, or refused: a folder holding a run made with
another recipe is never removed unless the user asked to overwrite.

Example:
    >>> recipe_key(Recipe.from_dict({"name": "a"})) == recipe_key(Recipe.from_dict({"name": "b"}))
    True
    >>> recipe_key(Recipe()) == recipe_key(Recipe.from_dict({"training": {"overwrite": True}}))
    True
    >>> recipe_key(Recipe()) == recipe_key(Recipe.from_dict({"training": {"seed": 1}}))
    False
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from .files import read_json
from .recipe import Recipe

#: Resolved keys that do not change what a run trains or measures.
RESULT_NEUTRAL_KEYS = ("name", "training.output_dir", "training.overwrite", "training.resume_from_checkpoint")


def resolved(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a flat ``{dotted.key: value}`` dict, schedule and spec in canonical form, so that two
    spellings of the same schedule compare equal.

    >>> resolved(Recipe.from_dict({"dropout": {"schedule": "hidden=0.1"}}))["dropout.schedule"]
    {'hidden': {'shape': 'constant', 'p': 0.1}}
    """
    data = recipe.to_dict()
    schedule = recipe.dropout.parsed_schedule()
    data["dropout"]["schedule"] = schedule.to_dict() if schedule is not None else None
    data["dropout"]["spec"] = dict(recipe.dropout.parsed_spec().items())
    return _flatten(data)


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and not (prefix == "dropout." and key in ("schedule", "spec")):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def identity(recipe: Recipe) -> dict[str, Any]:
    """:func:`resolved` without :data:`RESULT_NEUTRAL_KEYS`: everything that can change what is trained."""
    return {k: v for k, v in resolved(recipe).items() if k not in RESULT_NEUTRAL_KEYS}


def recipe_key(recipe: Recipe) -> str:
    """A digest of :func:`identity`: equal for two recipes exactly when they make the same run."""
    return hashlib.sha256(json.dumps(identity(recipe), sort_keys=True, default=str).encode()).hexdigest()[:20]


def recipe_differences(old: Recipe, new: Recipe) -> list[str]:
    """``key: old -> new`` for every key of :func:`identity` that differs.

    >>> recipe_differences(Recipe(), Recipe.from_dict({}, ["data.max_train=48"]))
    ['data.max_train: None -> 48']
    >>> recipe_differences(Recipe.from_dict({"dropout": {"schedule": "hidden=0.1"}}),
    ...                    Recipe.from_dict({"dropout": {"schedule": {"hidden": 0.1}}, "training": {"overwrite": True}}))
    []
    """
    a, b = identity(old), identity(new)
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


@dataclass(frozen=True)
class RunDirState:
    """What ``recipe.output_dir`` holds, judged against ``recipe``.

    ``kind``: ``empty`` (nothing there), ``finished`` (a finished run of this very recipe: ``metrics`` holds its
    metrics.json), ``unfinished`` (a run of this very recipe that never finished: a killed attempt's files),
    ``other`` (anything else: another recipe's run, an unreadable recipe.yaml, files without a recipe)."""

    kind: str
    why: str = ""
    metrics: Optional[dict] = None


def run_dir_state(recipe: Recipe) -> RunDirState:
    run_dir = recipe.output_dir
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return RunDirState("empty")
    if not (run_dir / "recipe.yaml").is_file():
        return RunDirState("other", "it holds files but no recipe.yaml")
    try:
        previous = Recipe.from_yaml(run_dir / "recipe.yaml")
    except (ValueError, OSError) as err:
        return RunDirState("other", f"its recipe.yaml cannot be read ({str(err).splitlines()[0]})")
    differences = recipe_differences(previous, recipe)
    if differences:
        return RunDirState("other", "made with another recipe: " + "; ".join(differences))
    if not (run_dir / "metrics.json").is_file():
        return RunDirState("unfinished", "an unfinished run of this recipe (no metrics.json)")
    try:
        return RunDirState("finished", metrics=read_json(run_dir / "metrics.json"))
    except (ValueError, OSError) as err:
        return RunDirState("unfinished", f"its metrics.json cannot be read ({str(err).splitlines()[0]})")


@dataclass(frozen=True)
class RunDirPlan:
    """What to do with one run: ``reuse`` (``metrics`` holds the finished run's), or ``train`` (``overwrite``:
    whether the run's old files are removed first, which only ever happens to an unfinished run of this very recipe
    or when the user asked to overwrite)."""

    action: str
    overwrite: bool = False
    metrics: Optional[dict] = None
    note: str = ""


def plan_run_dir(recipe: Recipe, reuse: bool = True, overwrite: bool = False) -> RunDirPlan:
    """Decide, before anything trains, what happens to ``recipe.output_dir``. Raises ``ValueError`` (one line
    naming the folder and why) when it holds something that only ``overwrite`` may replace.

    ``reuse=False`` retrains finished runs of this very recipe (the user asked for it: their files are replaced);
    ``overwrite=True`` also replaces a run made with another recipe."""
    state = run_dir_state(recipe)
    if state.kind == "empty":
        return RunDirPlan("train")
    if state.kind == "finished":
        if reuse:
            return RunDirPlan("reuse", metrics=state.metrics, note=f"reusing {recipe.output_dir}")
        return RunDirPlan("train", overwrite=True, note=f"re-running {recipe.output_dir}: reuse is off")
    if state.kind == "unfinished":  # a killed attempt of the same run: nothing finished is lost
        return RunDirPlan("train", overwrite=True, note=f"re-running {recipe.output_dir}: {state.why}")
    if overwrite:
        return RunDirPlan("train", overwrite=True, note=f"overwriting {recipe.output_dir}: {state.why}")
    raise ValueError(f"{recipe.output_dir} holds a run that is not this one ({state.why}); pass --overwrite to "
                     f"replace it, or write to another output directory")


def clean_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` as a run records it (``recipe.yaml``): without ``training.overwrite``, which is an instruction for
    one launch, not a property of the run."""
    data = recipe.to_dict()
    data["training"]["overwrite"] = False
    return Recipe.from_dict(data)
