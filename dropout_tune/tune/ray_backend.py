"""The Ray Tune search (``--backend ray``): the same space (Optuna's define-by-run through Ray's ``OptunaSearch``,
seeded TPE), the same objective, Ray's ASHA scheduler on the validation metric, on a local Ray or an existing
cluster (``--ray-address``, or ``RAY_ADDRESS``). Ray is an optional extra (``pip install 'dropout-tune[ray]'``),
imported only here.

Results are written like the Optuna backend's (``trials.csv`` etc.); a trial ASHA stopped before its full budget is
PRUNED. Resuming and extending a study are the Optuna backend's (its storage); a Ray rerun starts a new experiment.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from .objective import run_trial, trial_recipe
from .storage import open_storage
from .report import TrialRecord, clean_params
from .plan import REDUCTION_FACTOR, Plan
from .progress import ProgressLog, trial_line

METRIC = "objective"


def require_ray() -> None:
    """A one-line error when Ray Tune is missing."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError as err:
        raise ValueError(f"--backend ray: Ray Tune is not installed ({err}); pip install 'dropout-tune[ray]'") \
            from None


def _ray_trial(config: dict, plan: Plan) -> None:
    """Ray's function trainable: one trial, reporting each evaluation (ASHA stops it by not resuming it)."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    recipe = trial_recipe(plan.search_recipe, config, Path(plan.output_dir) / "trials" / f"ray-{trial_id}",
                          plan.roles)

    def report(value: float, step: int, total: int) -> bool:
        tune.report({METRIC: value, "step": step, "budget_steps": total})
        return False

    outcome = run_trial(recipe, report)
    if outcome.failed and not outcome.pruned:  # an earlier evaluation must not stand in for the last one
        raise RuntimeError(outcome.note)


def search_with_ray(plan: Plan) -> list[TrialRecord]:
    """Run ``plan.trials`` trials, ``plan.workers`` at a time; returns one record per trial."""
    require_ray()
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    started = not ray.is_initialized()
    if started:
        if plan.ray_address:
            ray.init(address=plan.ray_address, log_to_driver=True)
        else:
            ray.init(num_cpus=plan.workers, include_dashboard=False, log_to_driver=True)
    try:
        space = plan.search_space()
        sampler = optuna.samplers.TPESampler(seed=plan.seed, n_startup_trials=min(10, max(1, plan.trials // 2)))
        # the search's own storage and study: one dashboard and one record for both backends (no heartbeats: Ray
        # asks and tells, it runs no Optuna optimize loop)
        storage = open_storage(plan.storage, heartbeat_s=None, grace_s=None)
        searcher = OptunaSearch(space=space.define_by_run, sampler=sampler, metric=METRIC, mode="max",
                                storage=storage, study_name=plan.study)
        scheduler = (ASHAScheduler(time_attr="step", metric=METRIC, mode="max", max_t=plan.budget_steps,
                                   grace_period=plan.eval_steps,
                                   reduction_factor=REDUCTION_FACTOR) if plan.pruner == "asha"
                     else FIFOScheduler())
        progress = _progress_callback(plan, space)
        trainable = tune.with_resources(tune.with_parameters(_ray_trial, plan=plan), _resources())
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=plan.trials,
                                        max_concurrent_trials=plan.workers),
            run_config=tune.RunConfig(name=plan.study, storage_path=str(Path(plan.output_dir) / "ray"), verbose=1,
                                      callbacks=[progress]),
        )
        results = tuner.fit()
        return _records(results, space)
    finally:
        if started:
            ray.shutdown()


def _progress_callback(plan: Plan, space):
    """A Ray Tune callback printing ``[trial k/N] #i ...`` (and logging it to OUT/tune.log) as each trial ends; ``i``
    counts ended trials in order (Ray's own ids are strings)."""
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.ended, self.finished, self.started = 0, 0, time.monotonic()
            self.log = ProgressLog(plan.output_dir)

        def _line(self, trial, failed: bool) -> None:
            result = trial.last_result or {}
            steps, budget = result.get("step"), result.get("budget_steps")
            state = "FAIL" if failed else ("COMPLETE" if budget and steps and steps >= budget else "PRUNED")
            self.ended += 1
            self.finished += state != "FAIL"
            elapsed = time.monotonic() - self.started
            eta = elapsed / self.finished * max(plan.trials - self.finished, 0) if self.finished else None
            params = clean_params({k: v for k, v in (trial.config or {}).items()
                                   if k in space.params and space.params[k].searched})
            self.log(trial_line(self.finished, plan.trials, self.ended - 1, params, state, result.get(METRIC),
                                f"step {steps}/{budget}" if state == "PRUNED" else None, elapsed, eta))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, failed=True)

    return Progress()


def _resources() -> dict[str, float]:
    import torch

    return {"cpu": 1, "gpu": 1 if torch.cuda.is_available() else 0}


def _records(results: Any, space) -> list[TrialRecord]:
    rows = []
    for result in results:
        metrics = result.metrics or {}
        frame = result.metrics_dataframe
        intermediate = ({int(s): float(v) for s, v in zip(frame["step"], frame[METRIC])}
                        if frame is not None and METRIC in frame else {})
        steps, budget = metrics.get("step"), metrics.get("budget_steps")
        if result.error is not None or not intermediate:
            state = "FAIL"
        else:
            state = "COMPLETE" if budget and steps >= budget else "PRUNED"
        params = clean_params({k: v for k, v in (result.config or {}).items()
                               if k in space.params and space.params[k].searched})
        started = float(frame["timestamp"].min()) if frame is not None and "timestamp" in frame else math.inf
        rows.append(((started, str(metrics.get("trial_id", result.path))), TrialRecord(
            number=0, state=state, value=metrics.get(METRIC), params=params, steps=steps, budget_steps=budget,
            intermediate=intermediate, duration_s=metrics.get("time_total_s"),
            note=str(result.error).splitlines()[0] if result.error is not None else "")))
    records = [record for _, record in sorted(rows, key=lambda row: row[0])]
    for number, record in enumerate(records):
        record.number = number
    return records
