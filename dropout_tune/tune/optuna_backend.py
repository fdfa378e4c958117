"""The Optuna search: a seeded TPE sampler, successive-halving pruning (ASHA) on the validation metric, and K
workers that claim trials from one study until exactly ``plan.trials`` have finished (COMPLETE or PRUNED).

A worker starts a trial only when finished + running trials are below the target; a trial whose worker died is
failed by the heartbeat check once its grace period has passed, and its place taken by a new trial. Two workers that
claim in the same instant are told apart after the claim: the later trial (higher number) steps back (recorded as
FAIL with ``note: not run``) instead of overshooting the target.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from . import storage as storage_mod
from .objective import run_trial, trial_recipe
from .objectives import constraint_values, constraints_func, needs_calibration
from .plan import REDUCTION_FACTOR, Plan
from .progress import ProgressLog, trial_line
from .report import TrialRecord, clean_params, quiet_optuna

FINISHED = ("COMPLETE", "PRUNED")
CLAIMED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
MAX_FAILURES_IN_A_ROW = 3


class TargetReached(Exception):
    """Raised inside a just-claimed trial when other workers already cover the target."""


def make_pruner(plan: Plan):
    import optuna

    if plan.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=plan.eval_steps, reduction_factor=REDUCTION_FACTOR)


def make_sampler(plan: Plan, worker: int, trials_before: int):
    """TPE seeded from (seed, worker, trials already in the study): reproducible, and a second worker or a rerun
    does not replay the first random trials."""
    import numpy as np
    import optuna

    seed = int(np.random.SeedSequence([plan.seed, worker, trials_before]).generate_state(1)[0])
    # one objective or several (TPE's multi-objective form); constraints through Optuna's constraints_func
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, plan.trials // 2)),
                                      constraints_func=constraints_func if plan.constraints else None)


def load_study(plan: Plan, worker: int = 0):
    import optuna

    storage = storage_mod.open_storage(plan.storage, plan.heartbeat_s, plan.grace_s)
    study = optuna.load_study(study_name=plan.study, storage=storage, pruner=make_pruner(plan))
    study.sampler = make_sampler(plan, worker, len(study.get_trials(deepcopy=False)))
    return study


class Objective:
    """Optuna objective: claim check, the space's values, one trial; steps used recorded as user attrs."""

    def __init__(self, plan: Plan, worker: int):
        self.plan = plan
        self.worker = worker
        self.space = plan.search_space()

    def __call__(self, trial) -> float:
        import optuna

        ahead = [t for t in storage_mod.trials_in(trial.study, CLAIMED) if t.number < trial.number]
        if len(ahead) >= self.plan.trials:
            trial.set_user_attr("note", "not run: target reached by other workers")
            raise TargetReached()
        values = self.space.suggest(trial)
        trial.set_user_attr("worker", self.worker)
        recipe = trial_recipe(self.plan.search_recipe, values, Path(self.plan.output_dir) / "trials" /
                              f"{trial.number:04d}", self.plan.roles)

        names = [name for name, _ in self.plan.goals]
        several = len(names) > 1

        def report(value: float, step: int, total: int) -> bool:
            trial.set_user_attr("steps", step)
            if several:  # Optuna records and prunes on one value: a multi-objective trial reports none
                return False
            trial.report(value, step)
            return trial.should_prune()

        wanted = names + [c[0] for c in self.plan.constraints]
        outcome = run_trial(recipe, report, metric=names[0], calibration=needs_calibration(wanted))
        trial.set_user_attr("steps", outcome.steps)
        trial.set_user_attr("budget_steps", outcome.budget_steps)
        trial.set_user_attr("metrics", {k: v for k, v in outcome.metrics.items() if v == v})  # NaN is not JSON
        if self.plan.constraints:  # read back by constraints_func when the trial ends
            trial.set_user_attr("constraint", constraint_values(outcome.metrics, self.plan.constraints))
        if outcome.pruned:
            raise optuna.TrialPruned(f"pruned at step {outcome.steps} of {outcome.budget_steps}")
        if outcome.failed:
            trial.set_user_attr("note", outcome.note)  # Optuna fails a NaN value; the note says why
        if several:
            return tuple(outcome.metrics.get(name, float("nan")) for name in names)
        return outcome.value


class TrialProgress:
    """Optuna callback: ``[trial k/N] #number params: value (elapsed, ETA)`` after each trial this worker ran, k
    counting every worker's finished trials; the ETA extrapolates the pace since this worker started."""

    def __init__(self, plan: Plan, finished_before: int):
        self.log = ProgressLog(plan.output_dir)
        self.trials = plan.trials
        self.goals = plan.goals
        self.finished_before = finished_before
        self.started = time.monotonic()

    def __call__(self, study, trial) -> None:
        counts = storage_mod.state_counts(study)
        finished = sum(counts[s] for s in FINISHED)
        elapsed = time.monotonic() - self.started
        done_here = finished - self.finished_before
        eta = elapsed / done_here * max(self.trials - finished, 0) if done_here > 0 else None
        if trial.state.name == "PRUNED":
            where = f"step {trial.user_attrs.get('steps')}/{trial.user_attrs.get('budget_steps')}"
        else:
            reason = str(trial.system_attrs.get("fail_reason") or "").strip()
            where = reason.splitlines()[0] if reason else None
        values = trial.values or []
        named = dict(zip([n for n, _ in self.goals], values)) if len(self.goals) > 1 and values else None
        self.log(trial_line(finished, self.trials, trial.number, clean_params(trial.params), trial.state.name,
                            values[0] if values else None, where, elapsed, eta, named))


def search_worker(plan: Plan, worker: int) -> None:
    """One worker: claim and run trials until the study has ``plan.trials`` finished ones."""
    study = load_study(plan, worker)
    objective = Objective(plan, worker)
    progress = TrialProgress(plan, sum(storage_mod.state_counts(study)[s] for s in FINISHED))
    failures = 0
    while True:
        storage_mod.fail_stale(study)
        counts = storage_mod.state_counts(study)
        finished = sum(counts[s] for s in FINISHED)
        if finished >= plan.trials:
            return
        if finished + counts["RUNNING"] + counts["WAITING"] >= plan.trials:
            time.sleep(plan.poll_s)  # the rest is running elsewhere; a dead worker's trial turns stale
            continue
        try:
            with quiet_optuna():  # the progress line replaces Optuna's "Trial k finished" line
                study.optimize(objective, n_trials=1, catch=(), gc_after_trial=True, callbacks=[progress])
        except TargetReached:
            continue
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker]
        if mine and mine[-1].state.name == "FAIL":
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise RuntimeError(f"{failures} trials in a row failed (the last: trial {mine[-1].number}); "
                                   f"see the warnings above")
        else:
            failures = 0


def search(plan: Plan) -> None:
    """Run ``plan.workers`` workers (processes) on the study; returns when the target is reached."""
    from .workers import run_workers

    run_workers(search_worker, plan, plan.workers)


def records_from_study(plan: Plan) -> list[TrialRecord]:
    """Every trial of the study as a :class:`TrialRecord`, ordered by number."""
    study = load_study(plan)
    names = [name for name, _ in plan.goals]
    return [_record(t, names) for t in study.get_trials(deepcopy=False)]


def pareto_numbers(plan: Plan) -> list[int]:
    """The trial numbers of the study's Pareto front (Optuna's ``best_trials``: feasible, non-dominated)."""
    return sorted(t.number for t in load_study(plan).best_trials)


def _record(t: Any, names: Sequence[str] = ()) -> TrialRecord:
    intermediate = dict(sorted(t.intermediate_values.items()))
    steps = t.user_attrs.get("steps", max(intermediate, default=None))
    duration = t.duration.total_seconds() if t.duration is not None else None
    note = t.user_attrs.get("note") or t.system_attrs.get("fail_reason", "")
    values = list(t.values) if t.values is not None else []
    constraint = t.system_attrs.get("constraints", t.user_attrs.get("constraint"))
    return TrialRecord(number=t.number, state=t.state.name, value=values[0] if values else None,
                       params=clean_params(t.params), steps=steps, budget_steps=t.user_attrs.get("budget_steps"),
                       intermediate=intermediate, duration_s=duration, note=str(note).splitlines()[0] if note else "",
                       values=dict(zip(names, values)) if len(names) > 1 else {},
                       constraint=list(constraint) if constraint is not None else None)
