"""Whole recipes as resumable jobs in an Optuna storage: ``run_recipes(recipes, storage, ...)`` trains each recipe
once with ``dropout_tune.train.train``, in ``workers`` processes that claim jobs from one study, and returns their
``metrics.json`` contents in order.

A job is keyed by its run identity (``run_identity.recipe_key``: the resolved recipe without the settings that
change nothing, like ``name``, ``training.output_dir`` and ``training.overwrite``): a job whose key already
finished in this storage is reused, never retrained, and so is a finished run of the same recipe found in the
job's folder; anything that changes the recipe (a seed, a rate, a data size) is a new job. A job's folder holding
a run made with another recipe is refused unless the plan says ``overwrite``; only an unfinished run of the same
recipe (a killed attempt) is replaced without it. Claims heartbeat like search trials, so a killed run's job is
retried by the next run. The confirm stage of ``tune`` runs on it, and so does ``compare --workers K`` (variants x
seeds in parallel, resumable).
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..files import json_safe
from ..recipe import Recipe
from ..run_identity import plan_run_dir, recipe_key
from . import storage as storage_mod


class ClaimLost(Exception):
    """Another worker claimed the same job first (lower trial number) or finished it meanwhile."""


@dataclass(frozen=True)
class JobPlan:
    recipes: tuple[dict, ...]
    labels: tuple[str, ...]
    storage: str
    study: str
    heartbeat_s: int
    grace_s: int
    since: Optional[datetime.datetime]  # with reuse off: only jobs finished after this count
    overwrite: bool = False  # the user asked to replace runs made with another recipe in the jobs' folders
    announce: Optional[Callable[[int, int, str], None]] = None  # (index, jobs, label) as a job starts training

    @property
    def keys(self) -> list[str]:
        return [recipe_key(Recipe.from_dict(r)) for r in self.recipes]


def _load_study(plan: JobPlan):
    import optuna

    storage = storage_mod.open_storage(plan.storage, plan.heartbeat_s, plan.grace_s)
    return optuna.create_study(storage=storage, study_name=plan.study, direction="maximize", load_if_exists=True)


def _finished(study, since: Optional[datetime.datetime]) -> dict[str, dict]:
    """job key -> metrics of its latest finished run."""
    done: dict[str, dict] = {}
    for t in storage_mod.trials_in(study, ("COMPLETE",)):
        if "job_key" in t.user_attrs and (since is None or t.datetime_start >= since):
            done[t.user_attrs["job_key"]] = t.user_attrs.get("metrics", {})
    return done


def _running(study) -> list:
    return [t for t in storage_mod.trials_in(study, ("RUNNING",)) if "job_key" in t.user_attrs]


class _Job:
    def __init__(self, plan: JobPlan, index: int, key: str):
        self.plan, self.index, self.key = plan, index, key

    def __call__(self, trial) -> float:
        from ..train import train

        trial.set_user_attr("job_key", self.key)
        trial.set_user_attr("label", self.plan.labels[self.index])
        rivals = [t for t in _running(trial.study) if t.user_attrs["job_key"] == self.key and t.number < trial.number]
        if rivals or self.key in _finished(trial.study, self.plan.since):
            trial.set_user_attr("note", "not run: claimed by another worker")
            raise ClaimLost()
        recipe = Recipe.from_dict(self.plan.recipes[self.index])
        decision = plan_run_dir(recipe, reuse=self.plan.since is None, overwrite=self.plan.overwrite)
        if decision.action == "reuse":  # finished in its folder (an earlier run without this storage)
            metrics = decision.metrics
        else:
            recipe.training.overwrite = decision.overwrite
            if self.plan.announce is not None:
                self.plan.announce(self.index, len(self.plan.recipes), self.plan.labels[self.index])
            metrics = train(recipe)
        trial.set_user_attr("metrics", json_safe(metrics))
        return 0.0  # the job's result is its metrics (user attribute), not a value to optimise


def job_worker(plan: JobPlan, worker: int) -> None:
    """Claim and run jobs until every job of ``plan`` has finished (here or in another worker)."""
    from .report import quiet_optuna

    with quiet_optuna():  # Optuna's "trial finished with value 0.0" lines say nothing about a job
        _claim_and_run(plan, worker)


def _claim_and_run(plan: JobPlan, worker: int) -> None:
    study = _load_study(plan)
    keys = plan.keys
    while True:
        storage_mod.fail_stale(study)
        done = _finished(study, plan.since)
        claimed = {t.user_attrs["job_key"] for t in _running(study)}
        pending = sorted({keys.index(k) for k in keys if k not in done and k not in claimed})
        if not pending:
            if all(k in done for k in keys):
                return
            time.sleep(min(2.0, plan.heartbeat_s))
            continue
        index = pending[worker % len(pending)]  # workers start on different jobs
        try:
            study.optimize(_Job(plan, index, keys[index]), n_trials=1, catch=())
        except ClaimLost:
            continue


def run_recipes(recipes: Sequence[Recipe], storage: str, study: str = "runs", workers: int = 1,
                labels: Optional[Sequence[str]] = None, reuse: bool = True, overwrite: bool = False,
                heartbeat_s: int = storage_mod.HEARTBEAT_S, grace_s: int = storage_mod.GRACE_S,
                announce: Optional[Callable[[int, int, str], None]] = None) -> list[dict]:
    """Train every recipe (see the module docstring); returns each recipe's metrics, in order. ``announce`` (picklable)
    is called with (index, number of recipes, label) as a job starts training, in the worker that trains it."""
    from .workers import run_workers

    if not recipes:
        return []
    labels = list(labels) if labels is not None else [r.name for r in recipes]
    since = None if reuse else datetime.datetime.now()
    plan = JobPlan(tuple(r.to_dict() for r in recipes), tuple(labels), storage, study, heartbeat_s, grace_s, since,
                   overwrite, announce)
    done = _finished(_load_study(plan), since)
    pending = len({k for k in plan.keys if k not in done})
    if pending:
        run_workers(job_worker, plan, max(1, min(workers, pending)))
        done = _finished(_load_study(plan), since)
    return [done[k] for k in plan.keys]
