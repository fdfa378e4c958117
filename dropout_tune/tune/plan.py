"""The resolved plan of a search: everything a worker process or a backend needs, picklable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .space import SearchSpace

# Successive halving's rungs: the first evaluation, then every 4x more steps, each keeping the top quarter (Optuna's
# and Ray's default factor). With 4 evaluations per trial that is one rung, at a quarter of training: a trial stopped
# there costs a quarter of a full one. A factor of 3 adds a rung at 3/4 of training that saves a quarter of a trial
# while ranking trials whose values differ by about the validation noise (measured in README, "Search").
REDUCTION_FACTOR = 4


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs (picklable): resolved recipes, the validated space, storage, budget."""

    recipe: dict  # the user's recipe (with --set): confirm runs and best_recipe.yaml start from it
    search_recipe: dict  # the trials' recipe: evaluation every eval_steps, no checkpoints, no MC evaluation
    space: dict
    roles: tuple[str, ...]
    metric: str
    output_dir: str
    storage: str
    study: str
    trials: int
    pruner: str
    seed: int
    workers: int
    eval_steps: int
    budget_steps: int
    heartbeat_s: int
    grace_s: int
    ray_address: Optional[str] = None
    objectives: tuple = ()  # ((metric, "maximize" | "minimize"), ...); empty: the task's main metric, maximised
    constraints: tuple = ()  # ((metric, "<=" | ">=", bound), ...): Optuna's constraints_func

    @property
    def goals(self) -> tuple:
        """The objectives, the default spelled out."""
        return self.objectives or ((self.metric, "maximize"),)

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space, self.roles)

    @property
    def poll_s(self) -> float:
        return min(2.0, self.heartbeat_s)
