"""The outputs of a search: ``trials.csv``, ``best_recipe.yaml``, ``history.png``, ``importance.png`` and
``report.md``, from engine-neutral :class:`TrialRecord` rows (Optuna and Ray alike).

Plots are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state, no backend switch); importances are
Optuna's (``optuna.importance.get_param_importances``, fANOVA, seeded) over the completed trials.

Example:
    >>> rows = [TrialRecord(0, "COMPLETE", 0.7, {"shape": "early"}, 10, 10),
    ...         TrialRecord(1, "PRUNED", 0.6, {"shape": "late"}, 3, 10)]
    >>> best_record(rows).number, compute_spent(rows)
    (0, {'steps': 13, 'without_pruning': 20, 'budget_steps': 10})
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..recipe import Recipe
from ..files import atomic_write_text
from .space import SearchSpace, apply_params

FINISHED = ("COMPLETE", "PRUNED")


@dataclass
class TrialRecord:
    """One trial, whatever the engine."""

    number: int
    state: str  # COMPLETE / PRUNED / FAIL / RUNNING
    value: Optional[float]
    params: dict
    steps: Optional[int] = None  # optimizer steps it used
    budget_steps: Optional[int] = None  # steps of a full trial
    intermediate: dict = field(default_factory=dict)  # step -> validation value reported there
    duration_s: Optional[float] = None
    note: str = ""
    values: dict = field(default_factory=dict)  # objective name -> value (several objectives)
    constraint: Optional[list] = None  # Optuna's constraint values (<= 0: satisfied)


def clean_params(params: dict) -> dict:
    """Trial values with grid floats' binary noise removed (0.9500000000000001 -> 0.95).

    >>> clean_params({"a": 0.9500000000000001, "shape": "early"})
    {'a': 0.95, 'shape': 'early'}
    """
    return {k: round(v, 10) if isinstance(v, float) else v for k, v in params.items()}


@contextlib.contextmanager
def quiet_optuna():
    """Optuna at WARNING for in-memory helper studies (no "new study created" lines)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def best_record(records: Sequence[TrialRecord]) -> Optional[TrialRecord]:
    """The completed trial with the highest value (lowest number on ties); None when none completed."""
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None and not math.isnan(r.value)]
    return max(complete, key=lambda r: (r.value, -r.number)) if complete else None


def compute_spent(records: Sequence[TrialRecord]) -> dict[str, Optional[int]]:
    """Optimizer steps spent over all trials, and what the finished trials would have cost without pruning."""
    budgets = [r.budget_steps for r in records if r.budget_steps]
    budget = max(budgets) if budgets else None
    spent = sum(r.steps or 0 for r in records)
    finished = sum(r.state in FINISHED for r in records)
    return {"steps": spent, "without_pruning": finished * budget if budget else None, "budget_steps": budget}


def write_trials_csv(records: Sequence[TrialRecord], path: Path) -> None:
    """One row per trial: number, state, value, steps, budget_steps, duration_s, params_<name>..., note."""
    names = sorted({name for r in records for name in r.params})
    objectives = list(dict.fromkeys(name for r in records for name in r.values))  # several objectives: one column each
    constrained = any(r.constraint is not None for r in records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", *(f"value_{n}" for n in objectives),
                     *(["feasible"] if constrained else []), "steps", "budget_steps", "duration_s",
                     *(f"params_{n}" for n in names), "note"])
    for r in records:
        feasible = [] if not constrained else ["" if r.constraint is None else all(v <= 0 for v in r.constraint)]
        writer.writerow([r.number, r.state, "" if r.value is None else r.value,
                         *(_blank(r.values.get(n)) for n in objectives), *feasible, _blank(r.steps),
                         _blank(r.budget_steps), "" if r.duration_s is None else round(r.duration_s, 1),
                         *(_blank(r.params.get(n)) for n in names), r.note])
    atomic_write_text(path, buffer.getvalue())


def _blank(value: Any) -> Any:
    return "" if value is None else value


def importances(records: Sequence[TrialRecord], space: SearchSpace) -> dict[str, float]:
    """Optuna's parameter importances over the completed trials ({} when fewer than 2 or nothing varies)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    distributions = space.distributions()
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None and not math.isnan(r.value)]
    if len(complete) < 2 or not distributions:
        return {}
    with quiet_optuna():
        study = optuna.create_study(direction="maximize")
    for r in complete:
        params = {k: v for k, v in r.params.items() if k in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: distributions[k] for k in params},
                                                  value=r.value))
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0)))
    except (ValueError, RuntimeError):  # e.g. no parameter common to all trials
        return {}


def plot_history(records: Sequence[TrialRecord], path: Path, metric: str) -> None:
    """Validation value per trial (complete: dots, pruned: crosses at their last report) and the best so far."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for state, marker, color in (("COMPLETE", "o", "C0"), ("PRUNED", "x", "C1")):
        rows = [r for r in records if r.state == state and r.value is not None]
        ax.scatter([r.number for r in rows], [r.value for r in rows], marker=marker, color=color,
                   label=f"{state.lower()} ({len(rows)})")
    best, xs, ys = None, [], []
    for r in sorted(records, key=lambda r: r.number):
        if r.state == "COMPLETE" and r.value is not None and (best is None or r.value > best):
            best = r.value
        if best is not None:
            xs.append(r.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="C2", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("search history")
    fig.tight_layout()
    _save(fig, path)


def plot_importance(values: dict[str, float], path: Path) -> None:
    """Horizontal bars of the parameter importances (a note when there are none yet)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 0.6 + 0.35 * max(len(values), 3)))
    ax = fig.add_subplot()
    if values:
        names = list(values)[::-1]
        ax.barh(names, [values[n] for n in names], color="C0")
        ax.set_xlabel("importance (fANOVA, completed trials)")
    else:
        ax.text(0.5, 0.5, "not enough completed trials for importances", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("which knobs mattered")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def best_values(plan, best: TrialRecord) -> dict[str, Any]:
    """The best trial's values, fixed ones of the space included."""
    return {**plan.search_space().fixed(), **best.params}


def write_best_recipe(plan, best: TrialRecord, path: Path) -> Recipe:
    """The user's recipe with the best trial's values, as a file ``dropout-tune train`` runs as it is."""
    data = apply_params(Recipe.from_dict(plan.recipe), best_values(plan, best), plan.roles).to_dict()
    data["name"] = f"{plan.recipe['name']}-best"
    recipe = Recipe.from_dict(data)
    header = (f"# Found by dropout-tune tune: study {plan.study!r}, trial {best.number}, validation {plan.metric} "
              f"{best.value:.4f}.\n# Run it: dropout-tune train {path}\n")
    atomic_write_text(path, header + recipe.to_yaml())
    return recipe


def _schedule_text(recipe: Recipe) -> str:
    schedule = recipe.dropout.parsed_schedule()
    return schedule.to_string() if schedule is not None else "(none)"


def write_report(plan, records: Sequence[TrialRecord], best: Optional[TrialRecord], importance: dict[str, float],
                 confirm: Any, path: Path) -> Path:
    """``report.md``: trials, best configuration, compute spent, importances, the confirm table and verdict."""
    states = {s: sum(r.state == s for r in records) for s in ("COMPLETE", "PRUNED", "FAIL")}
    spent = compute_spent(records)
    lines = [f"# dropout-tune tune: {plan.recipe['name']}", "",
             f"Study `{plan.study}` in `{plan.storage}`; pruner {plan.pruner}; {plan.trials} trials requested: "
             f"{states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed. Objective: "
             f"validation {plan.metric} at the end of training (the test split is not evaluated during the search).",
             ""]
    if best is None:
        lines += ["No trial completed: no best configuration yet.", ""]
    else:
        recipe = apply_params(Recipe.from_dict(plan.recipe), best_values(plan, best), plan.roles)
        lines += ["## Best configuration", "",
                  f"Trial {best.number}: validation {plan.metric} **{best.value:.4f}** "
                  f"(`best_recipe.yaml`; run it with `dropout-tune train best_recipe.yaml`).", "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in sorted(best_values(plan, best).items())]
        lines += ["", f"Schedule: `{_schedule_text(recipe)}`; label smoothing "
                      f"{recipe.regularization.label_smoothing:g}, weight decay {recipe.regularization.weight_decay:g},"
                      f" learning rate {recipe.optim.learning_rate:g}.", ""]
    lines += ["## Compute", ""]
    if spent["without_pruning"]:
        saved = 1 - spent["steps"] / spent["without_pruning"]
        lines += [f"{spent['steps']} optimizer steps spent over all trials; the same finished trials without pruning: "
                  f"{spent['without_pruning']} ({spent['budget_steps']} each): {saved:.0%} saved.", ""]
    else:
        lines += [f"{spent['steps']} optimizer steps spent.", ""]
    lines += ["## Which knobs mattered", ""]
    if importance:
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in importance.items()]
        lines += ["", f"Optuna's fANOVA importances over the {states['COMPLETE']} completed trials (`importance.png`): "
                      "the share of the variation of their values each knob explains. With few trials, or values "
                      "that differ by less than the validation noise, read them as hints, not findings."]
    else:
        lines += ["Not enough completed trials for importances."]
    lines.append("")
    if confirm is not None:
        lines += ["## Confirmation on the test split", "", confirm.table(), "", confirm.verdict(), ""]
    lines += ["Files: `trials.csv`, `best_recipe.yaml`, `history.png`, `importance.png`"
              + (", `confirm/`" if confirm is not None else "") + ".", ""]
    atomic_write_text(path, "\n".join(lines))
    return Path(path)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
