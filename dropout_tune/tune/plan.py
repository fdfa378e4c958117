"""The resolved plan of a search: everything a worker process or a backend needs, picklable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .space import SearchSpace


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

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space, self.roles)

    @property
    def poll_s(self) -> float:
        return min(2.0, self.heartbeat_s)
