"""``run_tune(settings)``: check everything, search, write the outputs, confirm.

Every check that can fail on bad input (the recipe, the space against the model's roles, the storage URL, the
trial count, the backend) runs in :func:`prepare`, before anything trains, and raises a one-line ValueError.

Example:
    >>> TuneSettings("recipes/rotten_tomatoes.yaml", "runs/x", trials=0).check()
    Traceback (most recent call last):
    ...
    ValueError: --trials: 0 must be >= 1
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..recipe import Recipe, apply_overrides, load_yaml, read_yaml_file
from ..run_identity import identity
from . import storage as storage_mod
from .plan import Plan
from .space import SearchSpace, apply_params, model_roles

BACKENDS = ("optuna", "ray")
PRUNERS = ("asha", "none")
EVALUATIONS_PER_TRIAL = 4  # when the recipe does not evaluate every N steps itself


@dataclass(frozen=True)
class TuneSettings:
    """What the user asked for (the command's options)."""

    recipe_path: str
    output_dir: str
    trials: int
    space_path: Optional[str] = None
    overrides: tuple[str, ...] = ()
    workers: int = 1
    storage: Optional[str] = None
    study: Optional[str] = None
    backend: str = "optuna"
    pruner: str = "asha"
    confirm_seeds: int = 3
    seed: int = 0
    ray_address: Optional[str] = None
    heartbeat_s: int = storage_mod.HEARTBEAT_S
    grace_s: int = storage_mod.GRACE_S
    objective: Optional[str] = None  # "accuracy,nll": validation metrics to optimise (default: the task's main one)
    constraints: tuple[str, ...] = ()  # "ece<=0.05", ...

    def check(self) -> None:
        for name, value, low in (("--trials", self.trials, 1), ("--workers", self.workers, 1),
                                 ("--confirm-seeds", self.confirm_seeds, 0), ("--seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: {value!r} must be >= {low}")
        if self.seed >= 2**32:  # NumPy's limit, which Optuna's samplers use
            raise ValueError(f"--seed: {self.seed} must be < 2**32")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"--pruner: {self.pruner!r} is not one of {', '.join(PRUNERS)}")
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(f"grace period {self.grace_s} s must exceed the heartbeat interval {self.heartbeat_s} s")


def load_recipe_and_space(path: str, overrides: tuple[str, ...] = ()) -> tuple[Recipe, Optional[dict]]:
    """The recipe (a file or a shipped recipe's name) with ``overrides``, and its ``search:`` section (None when it
    has none). Overrides may set search entries too (``search.rate=[0,0.2]``)."""
    from ..recipe_catalog import resolve_recipe

    file = resolve_recipe(path)
    try:
        data = load_yaml(file.read_text(encoding="utf-8")) or {}
    except Exception as err:  # noqa: BLE001 - yaml errors of every kind
        raise ValueError(f"{file}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: a recipe is a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", file.stem)
    data = apply_overrides(data, list(overrides))
    search = data.pop("search", None)
    return Recipe.from_dict(data, folder=file.parent), search


def _read_space_file(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--space {str(file)!r} does not exist")
    data = read_yaml_file(file, "--space")
    if isinstance(data, dict) and set(data) == {"search"}:
        data = data["search"]
    return data


def total_steps(recipe: Recipe, n_train: int) -> int:
    """Optimizer steps of a full run, as the Trainer counts them (``runtime.optimizer_steps``; ``max_steps`` wins
    over epochs). Every backend's budget (Optuna's rungs, Ray ASHA's ``max_t``) is this number.

    >>> total_steps(Recipe.from_dict({"training": {"epochs": 2, "batch_size": 16}}), 100)
    14
    >>> total_steps(Recipe.from_dict({"training": {"batch_size": 16, "gradient_accumulation_steps": 2}}), 100)
    4
    """
    from ..runtime import optimizer_steps

    t = recipe.training
    return optimizer_steps(n_train, t.batch_size, t.gradient_accumulation_steps, t.epochs, t.max_steps)


def _search_recipe(recipe: Recipe, n_train: int) -> tuple[dict, int, int]:
    data = recipe.to_dict()
    budget = total_steps(recipe, n_train)
    training = data["training"]
    if training["eval_strategy"] != "steps":
        training["eval_strategy"] = "steps"
        training["eval_steps"] = max(1, math.ceil(budget / EVALUATIONS_PER_TRIAL))
    training.update(save_checkpoints=False, resume_from_checkpoint=None)
    data["mc_eval"]["enabled"] = False
    return data, training["eval_steps"], budget


def prepare(settings: TuneSettings) -> Plan:
    """All checks, then the study created (or found) in the storage. Nothing trains here."""
    from ..data import load_task
    from ..files import check_writable_dir

    settings.check()
    recipe, section = load_recipe_and_space(settings.recipe_path, settings.overrides)
    raw_space = _read_space_file(settings.space_path) if settings.space_path else section
    roles = model_roles(recipe)
    d = recipe.data
    task, splits = load_task(d.task, data_dir=d.data_dir, text_columns=d.text_columns, label_column=d.label_column,
                             max_train=d.max_train, max_eval=d.max_eval, seed=recipe.training.seed)
    space = (SearchSpace.from_dict(raw_space, roles) if raw_space is not None
             else SearchSpace.default(roles, regression=task.is_regression))
    if task.is_regression and "label_smoothing" in space.params:
        raise ValueError(f"search.label_smoothing: task {task.name!r} is a regression; smoothing needs classes")
    _dry_run(recipe, space, roles)
    from .objectives import parse_constraint, parse_objectives

    objectives = parse_objectives(settings.objective, task.metrics, task.is_regression)
    constraints = tuple(parse_constraint(c, task.metrics, task.is_regression) for c in settings.constraints)
    if settings.backend == "ray" and (objectives != ((task.main_metric, "maximize"),) or constraints):
        raise ValueError("--backend ray: --objective and --constraint need the Optuna backend (this Ray search "
                         f"optimises the task's main metric, {task.main_metric}, alone); use --backend optuna")
    pruner = settings.pruner if len(objectives) == 1 else "none"  # pruning ranks one value: several prune on none
    if settings.backend == "ray":
        from .ray_backend import require_ray

        require_ray()
    made_here = not Path(settings.output_dir).exists()
    output_dir = check_writable_dir(settings.output_dir)
    search_recipe, eval_steps, budget = _search_recipe(recipe, splits["train"].num_rows)
    url = settings.storage or storage_mod.default_storage_url(output_dir)
    study_name = settings.study or recipe.name
    plan = Plan(recipe=recipe.to_dict(), search_recipe=search_recipe, space=space.to_dict(), roles=roles,
                metric=task.main_metric, output_dir=str(output_dir.resolve()), storage=url, study=study_name,
                trials=settings.trials, pruner=pruner, seed=settings.seed, workers=settings.workers,
                eval_steps=eval_steps, budget_steps=budget, heartbeat_s=settings.heartbeat_s,
                grace_s=settings.grace_s, ray_address=settings.ray_address,
                objectives=objectives if objectives != ((task.main_metric, "maximize"),) else (),
                constraints=constraints)
    try:
        _create_study(plan)  # Ray's OptunaSearch records its trials in this study too
    except ValueError:  # a storage that cannot be opened: leave no empty output directory behind
        if made_here and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
    return plan


def _dry_run(recipe: Recipe, space: SearchSpace, roles: tuple[str, ...]) -> None:
    """Build one trial's recipe from a sample of the space, so impossible combinations fail now."""
    import optuna

    from .report import quiet_optuna

    with quiet_optuna():
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    apply_params(recipe, space.suggest(study.ask()), roles)


def _create_study(plan: Plan):
    import optuna

    storage = storage_mod.open_storage(plan.storage, plan.heartbeat_s, plan.grace_s)
    study = optuna.create_study(storage=storage, study_name=plan.study, directions=[d for _, d in plan.goals],
                                load_if_exists=True)
    storage_mod.bind_study(study, "objective", {"objectives": [list(g) for g in plan.goals],
                                                "constraints": [list(c) for c in plan.constraints]})
    with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"validation {name}" for name, _ in plan.goals])  # the dashboard's axis labels
    storage_mod.bind_study(study, "recipe", identity(Recipe.from_dict(plan.search_recipe)))
    storage_mod.bind_study(study, "space", plan.space)
    return study


@dataclass
class TuneResult:
    plan: Plan
    records: list
    best: Any
    confirm: Any
    report_path: Path


def run_tune(settings: TuneSettings) -> TuneResult:
    """Prepare, search (Optuna or Ray), write trials.csv / best_recipe.yaml / plots, confirm, write report.md."""
    from . import report
    from .confirm import run_confirm
    from .dashboard import write_search_info
    from .objectives import choose_best, goals_text
    from .progress import ProgressLog

    plan = prepare(settings)
    write_search_info(plan.output_dir, plan.storage, plan.study)  # `dropout-tune dashboard OUT` reads it
    log = ProgressLog(plan.output_dir)  # OUT/tune.log: these lines, every trial's and every confirm run's
    log(f"search: study {plan.study!r}, {plan.trials} finished trials wanted, {settings.backend}, pruner "
        f"{plan.pruner}, {plan.workers} worker(s), {goals_text(plan)}, {plan.budget_steps} steps a trial")
    if settings.backend == "optuna":
        from .optuna_backend import records_from_study, search

        search(plan)
        records = records_from_study(plan)
    else:
        from .ray_backend import search_with_ray

        records = search_with_ray(plan)
    out = Path(plan.output_dir)
    front: list = []
    if len(plan.goals) > 1:
        from .optuna_backend import pareto_numbers

        front = pareto_numbers(plan)
    default = not plan.objectives and not plan.constraints
    best = report.best_record(records) if default else choose_best(records, plan.goals, front)
    # the report speaks of the first objective; the confirm stage compares on the task's main metric (plan.metric)
    shown = plan if default else dataclasses.replace(plan, metric=plan.goals[0][0])
    report.write_trials_csv(records, out / "trials.csv")
    importances = report.importances(records, plan.search_space())
    report.plot_history(records, out / "history.png", shown.metric)
    report.plot_importance(importances, out / "importance.png")
    members = [r for r in records if r.number in set(front)]
    for r in members:
        report.write_best_recipe(shown, r, out / "pareto" / f"trial{r.number:04d}.yaml")
    confirm = None
    if best is not None:
        best_recipe = report.write_best_recipe(shown, best, out / "best_recipe.yaml")
        if settings.confirm_seeds:
            confirm = run_confirm(plan, best_recipe, settings.confirm_seeds)
    path = report.write_report(shown, records, best, importances, confirm, out / "report.md")
    if not default:
        from ..files import atomic_write_text
        from .objectives import objectives_section

        atomic_write_text(path, path.read_text(encoding="utf-8") + "\n" + objectives_section(plan, records, members,
                                                                                               best, out))
    spent = report.compute_spent(records)
    log.write(f"done: {sum(r.state == 'COMPLETE' for r in records)} complete, "
              f"{sum(r.state == 'PRUNED' for r in records)} pruned, {sum(r.state == 'FAIL' for r in records)} failed; "
              f"{spent['steps']} optimizer steps; "
              + ("no trial chosen" if best is None else f"best: trial {best.number}, validation {shown.metric} "
                                                        f"{best.value:.4f}")
              + (f"; Pareto front: trials {', '.join(map(str, front))}" if front else ""))
    if confirm is not None:
        log.write(confirm.table() + "\n" + confirm.verdict())
    return TuneResult(plan, records, best, confirm, path)
