"""What a search optimises: ``--objective accuracy,nll`` (one or several validation metrics, each with its direction)
and ``--constraint "ece<=0.05"`` (Optuna's ``constraints_func``: a trial whose final validation value breaks a bound is
infeasible, the sampler steers away from it and it is never chosen as best).

Several objectives make a multi-objective study (Optuna's TPE sampler in its multi-objective form): its result is a
Pareto front, not one best trial. Pruning compares one value per trial at a rung, so a search with several
objectives prunes on none (every trial trains its full budget). ``best_recipe.yaml`` is the front member best on the
first objective; ``pareto/trialNNNN.yaml`` holds every member.

Calibration metrics (``nll``, ``ece``, ``brier``, ``mce``, ``adaptive_ece``) are computed from the validation
logits at each evaluation when an objective or constraint names one (classification tasks).

Example:
    >>> parse_objectives("accuracy,nll", ("accuracy", "f1"), regression=False)
    (('accuracy', 'maximize'), ('nll', 'minimize'))
    >>> parse_constraint("ece<=0.05", ("accuracy", "f1"), regression=False)
    ('ece', '<=', 0.05)
    >>> constraint_values({"ece": 0.07, "accuracy": 0.8}, (("ece", "<=", 0.05), ("accuracy", ">=", 0.7)))
    [0.02, -0.1]
    >>> parse_objectives("acuracy", ("accuracy",), regression=False)
    Traceback (most recent call last):
    ...
    ValueError: --objective: 'acuracy' is not a validation metric of this task (one of: accuracy, nll, brier, ece, mce, adaptive_ece)
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

CALIBRATION = ("nll", "brier", "ece", "mce", "adaptive_ece")
#: metrics where lower is better; every other metric is maximised
MINIMIZED = frozenset(CALIBRATION) | {"loss", "mse", "rmse", "mae"}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(<=|>=)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


def direction(metric: str) -> str:
    return "minimize" if metric in MINIMIZED else "maximize"


def available_metrics(task_metrics: Sequence[str], regression: bool) -> tuple[str, ...]:
    """The validation metrics a trial can report: the task's own (and ``combined_score`` when there are several),
    plus the calibration metrics for classification."""
    names = list(task_metrics) + (["combined_score"] if len(task_metrics) > 1 else [])
    return tuple(names + ([] if regression else list(CALIBRATION)))


def _check_metric(option: str, name: str, available: Sequence[str]) -> str:
    if name not in available:
        raise ValueError(f"{option}: {name!r} is not a validation metric of this task (one of: "
                         f"{', '.join(available)})")
    return name


def parse_objectives(text: Optional[str], task_metrics: Sequence[str], regression: bool) -> tuple:
    """``((metric, direction), ...)`` from ``"accuracy,nll"``; None or empty: the task's main metric."""
    available = available_metrics(task_metrics, regression)
    names = [n.strip() for n in (text or "").split(",") if n.strip()] or [task_metrics[0]]
    if len(set(names)) != len(names):
        raise ValueError(f"--objective: {text!r} names a metric twice")
    return tuple((_check_metric("--objective", n, available), direction(n)) for n in names)


def parse_constraint(text: str, task_metrics: Sequence[str], regression: bool) -> tuple[str, str, float]:
    """``(metric, "<=" | ">=", bound)`` from ``"ece<=0.05"``."""
    match = _CONSTRAINT.match(text)
    if match is None:
        raise ValueError(f"--constraint: {text!r} must be METRIC<=NUMBER or METRIC>=NUMBER, e.g. ece<=0.05")
    name = _check_metric("--constraint", match.group(1), available_metrics(task_metrics, regression))
    return name, match.group(2), float(match.group(3))


def constraint_values(metrics: Mapping[str, float], constraints: Sequence[Sequence[Any]]) -> list[float]:
    """Optuna's convention: one number per constraint, <= 0 when satisfied (a missing or NaN metric: +inf)."""
    values = []
    for name, op, bound in constraints:
        value = metrics.get(name)
        if value is None or math.isnan(float(value)):
            values.append(math.inf)
        else:
            values.append(round(float(value) - bound if op == "<=" else bound - float(value), 12))
    return values


def constraints_func(trial) -> list[float]:
    """``constraints_func`` for Optuna's samplers: the values the objective stored on the trial."""
    return list(trial.user_attrs.get("constraint", [math.inf]))


def needs_calibration(names: Sequence[str]) -> bool:
    return any(n in CALIBRATION for n in names)


def with_calibration(compute_metrics):
    """Wraps a Trainer ``compute_metrics``: adds ``nll``, ``brier``, ``ece``, ``mce``, ``adaptive_ece`` from the
    softmax of the evaluation logits."""
    import numpy as np

    from ..calibration import calibration_metrics

    def wrapped(eval_prediction):
        metrics = compute_metrics(eval_prediction)
        logits = eval_prediction.predictions
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        found = calibration_metrics(shifted / shifted.sum(axis=-1, keepdims=True), eval_prediction.label_ids)
        metrics.update({name: float(found[name]) for name in CALIBRATION})
        return metrics

    return wrapped


def is_feasible(record) -> bool:
    return all(v <= 0 for v in (record.constraint or []))


def better(value: float, other: float, how: str) -> bool:
    return value < other if how == "minimize" else value > other


def choose_best(records: Sequence, objectives: Sequence[Sequence[str]], front: Sequence[int] = ()):
    """The completed, feasible trial best on the first objective (lowest number on ties), among the Pareto front's
    members when there are several objectives; None when there is none."""
    how = objectives[0][1]
    pool = [r for r in records if r.state == "COMPLETE" and r.value is not None and not math.isnan(r.value)
            and is_feasible(r) and (len(objectives) == 1 or r.number in set(front))]
    best = None
    for r in sorted(pool, key=lambda r: r.number):
        if best is None or better(r.value, best.value, how):
            best = r
    return best


def front_table(front: Sequence, objectives: Sequence[Sequence[str]], chosen: Optional[int]) -> str:
    """Markdown: one row per Pareto-front member, its objectives and parameters; the chosen one marked."""
    names = [n for n, _ in objectives]
    params = sorted({p for r in front for p in r.params})
    rows = ["| trial | " + " | ".join(f"{n} ({'min' if h == 'minimize' else 'max'})" for n, h in objectives)
            + " | " + " | ".join(params) + " | file |",
            "|---" * (len(names) + len(params) + 2) + "|"]
    for r in front:
        mark = " (best_recipe.yaml)" if r.number == chosen else ""
        rows.append(f"| {r.number}{mark} | " + " | ".join(f"{r.values[n]:.4f}" for n in names) + " | "
                    + " | ".join(_fmt(r.params.get(p, "")) for p in params) + f" | pareto/trial{r.number:04d}.yaml |")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_front(records: Sequence, front: Sequence, objectives: Sequence[Sequence[str]], path: Path) -> None:
    """The completed trials in the plane of the first two objectives, the front joined and highlighted."""
    from matplotlib.figure import Figure

    (x, hx), (y, hy) = objectives[0], objectives[1]
    done = [r for r in records if r.state == "COMPLETE" and x in r.values and y in r.values]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.scatter([r.values[x] for r in done], [r.values[y] for r in done], color="C7", label=f"trials ({len(done)})")
    members = sorted(front, key=lambda r: r.values[x])
    ax.plot([r.values[x] for r in members], [r.values[y] for r in members], "o-", color="C3",
            label=f"Pareto front ({len(members)})")
    for r in members:
        ax.annotate(str(r.number), (r.values[x], r.values[y]), textcoords="offset points", xytext=(4, 4),
                    fontsize="small")
    ax.set_xlabel(f"validation {x} ({'lower' if hx == 'minimize' else 'higher'} is better)")
    ax.set_ylabel(f"validation {y} ({'lower' if hy == 'minimize' else 'higher'} is better)")
    ax.legend(fontsize="small")
    ax.set_title("Pareto front")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def goals_text(plan) -> str:
    """``validation accuracy`` or ``objectives accuracy (max), nll (min); constraint ece<=0.05``."""
    goals = plan.goals
    text = (f"validation {goals[0][0]}" if len(goals) == 1 else
            "objectives " + ", ".join(f"{n} ({'min' if h == 'minimize' else 'max'})" for n, h in goals))
    if plan.constraints:
        text += "; constraint " + ", ".join(f"{n}{op}{bound:g}" for n, op, bound in plan.constraints)
    return text


def objectives_section(plan, records: Sequence, front: Sequence, best, out: Path) -> str:
    """The report's part on objectives and constraints: the Pareto front (table, ``pareto.png``) with several
    objectives, the feasible trials with constraints."""
    lines = ["## Objectives", "", f"Searched on {goals_text(plan)}."]
    if plan.constraints:
        done = [r for r in records if r.state == "COMPLETE"]
        feasible = [r for r in done if is_feasible(r)]
        lines += ["", f"{len(feasible)} of {len(done)} completed trials meet the constraint (Optuna's "
                      f"`constraints_func` on the final validation metrics; `feasible` in `trials.csv`); only those "
                      f"can be chosen."]
        if best is None:
            lines += ["", "No completed trial meets it: no configuration is chosen and nothing is confirmed; loosen "
                          "the bound or search more trials."]
    if len(plan.goals) > 1:
        lines += ["", "Several objectives: the TPE sampler in its multi-objective form; no pruning (successive halving "
                      "ranks one value per trial, so every trial trained its full budget).", "",
                  "### Pareto front", "",
                  "The completed trials no other trial beats on every objective (Optuna's `best_trials`). "
                  "`best_recipe.yaml` (and the confirm stage) is the member best on the first objective; "
                  "`pareto/trialNNNN.yaml` holds each member as a recipe.", ""]
        if front:
            lines += [front_table(front, plan.goals, best.number if best is not None else None), ""]
            plot_front(records, front, plan.goals, out / "pareto.png")
            lines += ["![Pareto front](pareto.png)"]
        else:
            lines += ["No completed trial: no front yet."]
    return "\n".join(lines) + "\n"
