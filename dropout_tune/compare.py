"""Compare dropout schedules: run recipe variants over seeds, then means, 95% confidence intervals and a plot.

Intervals are Student-t intervals over seeds (n - 1 degrees of freedom); with one seed there is no interval and the
table says so. Differences against the first variant are paired by seed (same data order and initialisation).

Example:
    >>> summarize([0.70, 0.72, 0.74])["mean"]
    0.72
    >>> round(summarize([0.70, 0.72, 0.74])["ci95"], 4)
    0.0497
    >>> summarize([0.7])["ci95"] is None
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .recipe import Recipe
from .rundir import read_json, write_json


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, sample std and the half-width of the 95% t-interval (None for fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": round(mean, 10), "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"n": n, "mean": round(mean, 10), "std": std, "ci95": float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))}


@dataclass
class Variant:
    label: str
    recipe: Recipe


@dataclass
class Comparison:
    metric: str
    results: dict[str, dict[int, dict]] = field(default_factory=dict)  # label -> seed -> metrics.json

    def scores(self, label: str, split: str = "test") -> dict[int, float]:
        return {seed: m[split][self.metric] for seed, m in sorted(self.results[label].items())}

    def table(self) -> str:
        labels = list(self.results)
        lines = [f"| schedule | test {self.metric} (mean ± 95% CI) | seeds | validation {self.metric} | "
                 f"Δ test vs {labels[0]} (paired) | train s/run |", "|---|---|---|---|---|---|"]
        base = self.scores(labels[0])
        for label in labels:
            test, val = self.scores(label), self.scores(label, "validation")
            s, v = summarize(list(test.values())), summarize(list(val.values()))
            diff = "—"
            if label != labels[0]:
                common = sorted(set(test) & set(base))
                d = summarize([test[k] - base[k] for k in common]) if common else None
                if d:
                    diff = f"{d['mean']:+.4f}" + (f" ± {d['ci95']:.4f}" if d["ci95"] is not None else " (1 seed)")
            runtime = [m["train"]["runtime_s"] for m in self.results[label].values() if m["train"].get("runtime_s")]
            lines.append(f"| {label} | {_pm(s)} | {len(test)} | {v['mean']:.4f} | {diff} | "
                         f"{sum(runtime) / max(len(runtime), 1):.0f} |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {"metric": self.metric, "variants": {}}
        for label in self.results:
            out["variants"][label] = {"test": summarize(list(self.scores(label).values())),
                                      "validation": summarize(list(self.scores(label, "validation").values())),
                                      "per_seed": self.scores(label)}
        return out

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = list(self.results)
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(labels), 3.8))
        for i, label in enumerate(labels):
            values = list(self.scores(label).values())
            s = summarize(values)
            ax.errorbar([i], [s["mean"]], yerr=[s["ci95"] or 0.0], fmt="o", capsize=6, color="C0")
            ax.scatter([i + 0.08] * len(values), values, s=14, color="C1", zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_ylabel(f"test {self.metric}")
        ax.set_title("mean ± 95% CI over seeds (dots: seeds)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _pm(s: dict) -> str:
    return f"{s['mean']:.4f}" + (f" ± {s['ci95']:.4f}" if s["ci95"] is not None else " (1 seed: no CI)")


def variants_from(recipes: Sequence[Recipe], schedules: Sequence[str] = ()) -> list[Variant]:
    """Variants: each recipe as it is, or (with ``schedules`` like ``"off70=all=off_after:0.1:at=0.7"``) the first
    recipe once per labelled schedule."""
    if not schedules:
        return [Variant(r.name, r) for r in recipes]
    base = recipes[0]
    out = []
    for item in schedules:
        label, sep, schedule = item.partition("=")
        if not sep or not label or not schedule:
            raise ValueError(f"--schedule {item!r}: expected LABEL=SCHEDULE, e.g. off70=all=off_after:0.1:at=0.7")
        data = base.to_dict()
        data["name"] = f"{base.name}-{label}"
        data["dropout"]["schedule"] = schedule
        out.append(Variant(label, Recipe.from_dict(data)))
    return out


def run_comparison(variants: Sequence[Variant], seeds: Sequence[int], output_dir: Path,
                   overrides: Sequence[str] = (), reuse: bool = True) -> Comparison:
    """Train every variant with every seed (runs under ``output_dir/<label>/seed<k>``; finished runs are reused
    when ``reuse``), then write ``comparison.json``, ``comparison.md`` and ``comparison.png``."""
    from .train import train

    if not variants or not seeds:
        raise ValueError("compare needs at least one variant and one seed")
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise ValueError(f"variant labels must be distinct, got {labels}")
    output_dir = Path(output_dir)
    comparison: Optional[Comparison] = None
    for variant in variants:
        for seed in seeds:
            data = variant.recipe.to_dict()
            data["training"]["seed"] = seed
            data["training"]["output_dir"] = str(output_dir / variant.label / f"seed{seed}")
            recipe = Recipe.from_dict(data, list(overrides))
            metrics = read_json(recipe.output_dir / "metrics.json") if reuse else None
            if metrics is None:
                metrics = train(recipe)
            if comparison is None:
                comparison = Comparison(metric=metrics["main_metric"])
            comparison.results.setdefault(variant.label, {})[seed] = metrics
    assert comparison is not None
    write_json(output_dir / "comparison.json", comparison.to_dict())
    (output_dir / "comparison.md").write_text(comparison.table() + "\n")
    comparison.plot(output_dir / "comparison.png")
    return comparison
