"""One trial of a search: train a recipe on the train split with the HF Trainer, report the validation metric at
each evaluation, stop early when the engine says so. The test split is never evaluated here.

``run_trial(recipe, reporter)`` is engine-neutral: ``reporter(value, step, total_steps) -> bool`` is Optuna's
``trial.report`` + ``should_prune`` or Ray's ``tune.report``; True stops training (a pruned trial).
"""

from __future__ import annotations

import contextlib
import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from transformers import TrainerCallback

from ..recipe import Recipe
from .space import apply_params

Reporter = Callable[[float, int, int], bool]


@dataclass
class TrialOutcome:
    """What one trial did: its last validation value, optimizer steps used out of its budget, whether it was
    stopped early, and every ``(step, value)`` it reported."""

    value: Optional[float]
    steps: int
    budget_steps: int
    pruned: bool
    reports: list[tuple[int, float]] = field(default_factory=list)
    note: str = ""  # why there is no value (the last evaluation gave none): the trial failed, it is not scored
    metrics: dict = field(default_factory=dict)  # every validation metric of the last evaluation (no eval_ prefix)

    @property
    def failed(self) -> bool:
        return self.value is None or math.isnan(self.value)


class ReportCallback(TrainerCallback):
    """Sends ``eval_<metric>`` to ``reporter`` after every evaluation; stops training when it answers True
    (never after the last step: a trial that used its whole budget is complete). An evaluation without a finite
    value is not reported (engines rank numbers), but it is remembered: a trial is scored by its last evaluation,
    never by an earlier one standing in for it."""

    def __init__(self, reporter: Reporter, metric: str = ""):
        self.reporter = reporter
        self.metric = metric
        self.reports: list[tuple[int, float]] = []
        self.evaluated: list[tuple[int, float]] = []  # every evaluation, NaN included
        self.metrics: dict = {}  # the last evaluation's metrics
        self.stopped = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        value = float("nan") if value is None else float(value)
        self.evaluated.append((state.global_step, value))
        self.metrics = {k[len("eval_"):]: float(v) for k, v in (metrics or {}).items()
                        if k.startswith("eval_") and isinstance(v, (int, float))}
        if math.isnan(value):
            return
        self.reports.append((state.global_step, value))
        stop = self.reporter(float(value), state.global_step, state.max_steps)
        if stop and state.global_step < state.max_steps:
            self.stopped = True
            control.should_training_stop = True


def trial_recipe(base: Mapping[str, Any], values: Mapping[str, Any], output_dir: Path,
                 roles: Optional[Sequence[str]] = None) -> Recipe:
    """The recipe of one trial: ``base`` (a recipe dict) with the trial's values, writing under ``output_dir``."""
    data = apply_params(Recipe.from_dict(base), values, roles).to_dict()
    data["training"]["output_dir"] = str(output_dir)
    return Recipe.from_dict(data)


def run_trial(recipe: Recipe, reporter: Reporter, metric: Optional[str] = None,
              calibration: bool = False) -> TrialOutcome:
    """Train ``recipe`` (train split), evaluating on the validation split only; see the module docstring. ``metric``:
    the validation metric reported (default: the task's main one); ``calibration``: also compute nll, brier, ece,
    mce, adaptive_ece at each evaluation (classification)."""
    from transformers.trainer_callback import ProgressCallback

    from ..files import atomic_write_text
    from ..train import build_trainer

    callback = ReportCallback(reporter)
    with _quiet_datasets():  # a tokenisation bar per split per trial would bury the search's own lines
        run = build_trainer(recipe, extra_callbacks=[callback])
    callback.metric = metric or run.task.main_metric
    trainer = run.trainer
    if calibration:
        from .objectives import with_calibration

        trainer.compute_metrics = with_calibration(trainer.compute_metrics)
    trainer.remove_callback(ProgressCallback)  # likewise the training bar
    run.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.run_dir / "recipe.yaml", recipe.to_yaml())
    try:
        trainer.train()
        state = trainer.state
        if not callback.stopped and (not callback.evaluated or callback.evaluated[-1][0] != state.global_step):
            trainer.evaluate()  # the trainer's eval_dataset: validation; reported through the callback
        step, value = callback.evaluated[-1] if callback.evaluated else (state.global_step, float("nan"))
        note = (f"validation {callback.metric} was NaN at step {step} (its last evaluation): no value to rank"
                if math.isnan(value) else "")
        _remove_if_empty(Path(trainer.args.output_dir))  # the Trainer's folder for checkpoints trials never save
        return TrialOutcome(value, state.global_step, state.max_steps, callback.stopped, list(callback.reports), note,
                            dict(callback.metrics))
    finally:
        del trainer, run
        _release_memory()


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _remove_if_empty(directory: Path) -> None:
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
