"""The confirm stage: the found configuration and the recipe's own, re-trained over the same seeds on the full
budget (``OUT/confirm/<found|recipe>/seed<k>``), compared on the test split paired by seed: mean ± 95% CI of each,
of the per-seed differences, the paired t-test's p-value, and one plain sentence.

The confirm seeds are disjoint from the search's: every trial trains at the recipe's seed, so confirming at that seed
would retrain the very (configuration, seed) pair that won on validation. They are the next ones after it.

Example:
    >>> c = Confirmation("accuracy", {1: 0.80, 2: 0.82, 3: 0.81}, {1: 0.78, 2: 0.79, 3: 0.785})
    >>> c.verdict().split(":")[0]
    'The found configuration is better than the recipe’s own on the test split'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..files import write_json
from ..recipe import Recipe
from ..statistics import all_finite, paired_p_value, same_differences, summarize


@dataclass
class Confirmation:
    """Test scores per seed of the found configuration and of the recipe's own."""

    metric: str
    found: dict[int, float]
    recipe: dict[int, float]
    search_seed: Optional[int] = None  # the seed every search trial trained at (not among the confirm seeds)

    @property
    def seeds(self) -> list[int]:
        return sorted(set(self.found) & set(self.recipe))

    def differences(self) -> list[float]:
        return [self.found[s] - self.recipe[s] for s in self.seeds]

    def p_value(self) -> Optional[float]:
        """Two-sided paired t-test (None with one seed, a NaN score, or when every difference is the same)."""
        return paired_p_value([self.found[s] for s in self.seeds], [self.recipe[s] for s in self.seeds])

    def interval(self) -> Optional[tuple[float, float]]:
        if not all_finite(self.differences()):
            return None
        d = summarize(self.differences())
        return None if d["ci95"] is None else (d["mean"] - d["ci95"], d["mean"] + d["ci95"])

    def missing(self) -> list[str]:
        """``label/seed<k>`` of every run whose test score is not a finite number."""
        return [f"{label}/seed{s}" for label, scores in (("found", self.found), ("recipe", self.recipe))
                for s in self.seeds if not all_finite([scores[s]])]

    def verdict(self) -> str:
        """Better, worse or within noise, in one sentence; or why there is no verdict."""
        diffs = self.differences()
        n = len(diffs)
        where = f"test {self.metric}"
        missing = self.missing()
        if missing:
            return (f"No verdict: {', '.join(missing)} gave no finite {where} (NaN); see its metrics.json under "
                    f"confirm/. The other seeds alone are not a paired comparison of the two configurations.")
        mean = sum(diffs) / n
        if n >= 2 and same_differences([self.found[s] for s in self.seeds], [self.recipe[s] for s in self.seeds]):
            if mean == 0 or abs(mean) <= 1e-12:
                return f"The found configuration and the recipe's own scored the same {where} on each of {n} seeds."
            return (f"The found configuration differs from the recipe's own by the same {mean:+.4f} {where} on each of "
                    f"{n} seeds: there is no spread for a t-test to measure (a small test split?).")
        interval = self.interval()
        if interval is None:
            return (f"With one seed there is no interval: the found configuration differs from the recipe's own by "
                    f"{mean:+.4f} {where}; confirm with more seeds (--confirm-seeds 3 or more) to tell it from noise.")
        p = self.p_value()
        stats_text = f"{mean:+.4f} {where}, 95% CI [{interval[0]:+.4f}, {interval[1]:+.4f}]" + (
            f", paired t-test p = {p:.3g}" if p is not None else "") + f", {n} seeds"
        if interval[0] > 0:
            return f"The found configuration is better than the recipe’s own on the test split: {stats_text}."
        if interval[1] < 0:
            return f"The found configuration is worse than the recipe’s own on the test split: {stats_text}."
        return (f"The found configuration is within noise of the recipe’s own on the test split (the interval "
                f"contains 0): {stats_text}.")

    def table(self) -> str:
        rows = [f"| configuration | test {self.metric} (mean ± 95% CI) | per seed |", "|---|---|---|"]
        for label, scores in (("found", self.found), ("recipe", self.recipe)):
            s = summarize([scores[k] for k in self.seeds])
            rows.append(f"| {label} | {_pm(s)} | {', '.join(f'{scores[k]:.4f}' for k in self.seeds)} |")
        d = summarize(self.differences())
        p = self.p_value()
        rows.append(f"| found − recipe (paired) | {_pm(d, signed=True)} | p = {'—' if p is None else f'{p:.3g}'} |")
        if self.search_seed is not None:
            rows += ["", f"Confirm seeds {', '.join(map(str, self.seeds))}; every search trial trained at seed "
                         f"{self.search_seed}, which is left out so no confirm run repeats a search trial."]
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "seeds": self.seeds, "search_seed": self.search_seed, "found": self.found,
                "recipe": self.recipe, "difference": summarize(self.differences()), "p_value": self.p_value(),
                "verdict": self.verdict()}


def _pm(s: dict, signed: bool = False) -> str:
    if not all_finite([s["mean"]]):
        return "nan (a seed has no score)"
    mean = f"{s['mean']:+.4f}" if signed else f"{s['mean']:.4f}"
    return mean + (f" ± {s['ci95']:.4f}" if s["ci95"] is not None else " (1 seed)")


def confirm_recipes(plan, found: Recipe, seeds: list[int]) -> tuple[list[Recipe], list[str]]:
    """The runs: found and recipe configurations, each at every seed, under ``OUT/confirm``."""
    recipes, labels = [], []
    for label, base in (("found", found.to_dict()), ("recipe", dict(plan.recipe))):
        for seed in seeds:
            data = Recipe.from_dict(base).to_dict()
            data["training"]["seed"] = seed
            data["training"]["output_dir"] = str(Path(plan.output_dir) / "confirm" / label / f"seed{seed}")
            recipes.append(Recipe.from_dict(data))
            labels.append(f"{label}/seed{seed}")
    return recipes, labels


def confirm_seeds(search_seed: int, n_seeds: int) -> list[int]:
    """The confirm seeds: the ``n_seeds`` after the search's (which every trial trained at).

    >>> confirm_seeds(42, 3)
    [43, 44, 45]
    """
    return [search_seed + i for i in range(1, n_seeds + 1)]


def run_confirm(plan, found: Recipe, n_seeds: int) -> Confirmation:
    """Train both configurations over ``n_seeds`` seeds (:func:`confirm_seeds`) on the executor, in
    ``plan.workers`` processes, resumable in the study's storage; writes ``confirm/confirm.json``."""
    from .executor import run_recipes
    from .progress import ConfirmProgress, ProgressLog

    search_seed = plan.search_recipe["training"]["seed"]
    seeds = confirm_seeds(search_seed, n_seeds)
    recipes, labels = confirm_recipes(plan, found, seeds)
    metrics = run_recipes(recipes, plan.storage, study=f"{plan.study}.confirm", workers=plan.workers, labels=labels,
                          heartbeat_s=plan.heartbeat_s, grace_s=plan.grace_s,
                          announce=ConfirmProgress(ProgressLog(plan.output_dir)))
    scores = {label: m["test"][plan.metric] for label, m in zip(labels, metrics)}
    result = Confirmation(plan.metric, {s: _finite(scores[f"found/seed{s}"]) for s in seeds},
                          {s: _finite(scores[f"recipe/seed{s}"]) for s in seeds}, search_seed)
    write_json(Path(plan.output_dir) / "confirm" / "confirm.json", result.to_dict())
    return result


def _finite(value) -> float:
    return float("nan") if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
