"""Compare dropout schedules: run recipe variants over seeds, then means, 95% confidence intervals and a plot.

Intervals are Student-t intervals over seeds (n - 1 degrees of freedom); with one seed there is no interval and the
table says so. Differences against the first variant (the baseline) are paired by seed (same data order and
initialisation); their p-values come from a two-sided paired t-test, Holm-adjusted when three or more variants
make several comparisons against the one baseline.

A finished run is reused only when it is the same run (``run_identity``: the recipe it was made with, its
recipe.yaml, equals the one requested now, settings that change nothing aside). A folder holding a run made with
another recipe is refused before anything trains, naming the differing keys, unless the user asks to overwrite.

The statistics (``summarize``, ``paired_p_value``, ``holm``) live in ``statistics``, shared with ``tune``'s
confirm stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .figures import save_figure
from .files import atomic_write_text, check_writable_dir, read_json, write_json
from .recipe import Recipe, apply_overrides
from .run_identity import plan_run_dir
from .statistics import holm, paired_p_value, summarize

# keys compare sets itself for every run; an override of them would make runs collide or mislabel seeds
_MANAGED_KEYS = ("training.seed", "training.output_dir")


@dataclass
class Variant:
    label: str
    recipe: Recipe


@dataclass
class Comparison:
    metric: str
    results: dict[str, dict[int, dict]] = field(default_factory=dict)  # label -> seed -> metrics.json
    settings: dict[str, dict] = field(default_factory=dict)  # label -> recipe, schedule, spec, overrides

    def scores(self, label: str, split: str = "test") -> dict[int, float]:
        return {seed: m[split][self.metric] for seed, m in sorted(self.results[label].items())}

    @property
    def baseline(self) -> str:
        return next(iter(self.results))

    @property
    def adjusted(self) -> bool:
        """Whether p-values are Holm-adjusted: three or more variants, so two or more comparisons."""
        return len(self.results) >= 3

    def differences(self) -> dict[str, dict[str, Any]]:
        """Per non-baseline variant: the paired test-split difference (summary), its p-value and Holm's."""
        base = self.scores(self.baseline)
        out: dict[str, dict[str, Any]] = {}
        for label in list(self.results)[1:]:
            test = self.scores(label)
            common = sorted(set(test) & set(base))
            out[label] = {"seeds": common, "p": paired_p_value([test[k] for k in common], [base[k] for k in common]),
                          **(summarize([test[k] - base[k] for k in common]) if common else {"n": 0})}
        for label, p in zip(out, holm([d["p"] for d in out.values()])):
            out[label]["p_holm"] = p if self.adjusted else None
        return out

    def table(self) -> str:
        """Markdown table, with a note under it saying how the p-values were made."""
        differences = self.differences()
        p_header = "p (Holm)" if self.adjusted else "p"
        lines = [f"| schedule | test {self.metric} (mean ± 95% CI) | seeds | validation {self.metric} | "
                 f"Δ test vs {self.baseline} (paired) | {p_header} | train s/run |", "|---|---|---|---|---|---|---|"]
        for label in self.results:
            s = summarize(list(self.scores(label).values()))
            v = summarize(list(self.scores(label, "validation").values()))
            diff, p = "—", "—"
            d = differences.get(label)
            if d and d["n"]:
                diff = f"{d['mean']:+.4f}" + (f" ± {d['ci95']:.4f}" if d["ci95"] is not None else " (1 seed)")
                shown = d["p_holm"] if self.adjusted else d["p"]
                p = "—" if shown is None else f"{shown:.3g}"
            runtime = [m["train"]["runtime_s"] for m in self.results[label].values() if m["train"].get("runtime_s")]
            lines.append(f"| {label} | {_pm(s)} | {len(self.results[label])} | {v['mean']:.4f} | {diff} | {p} | "
                         f"{sum(runtime) / max(len(runtime), 1):.0f} |")
        if len(self.results) > 1:
            note = (f"p: two-sided paired t-test over seeds against {self.baseline}" +
                    (f", Holm-adjusted over the {len(differences)} comparisons (family-wise error)"
                     if self.adjusted else "") + "; — where fewer than 2 seeds pair up.")
            lines += ["", note]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        differences = self.differences()
        out: dict[str, Any] = {"metric": self.metric, "baseline": self.baseline,
                               "p_values": "paired t-test" + (", Holm-adjusted" if self.adjusted else ""),
                               "variants": {}}
        for label in self.results:
            out["variants"][label] = {**self.settings.get(label, {}),
                                      "test": summarize(list(self.scores(label).values())),
                                      "validation": summarize(list(self.scores(label, "validation").values())),
                                      "per_seed": self.scores(label)}
            if label in differences:
                out["variants"][label]["difference_vs_baseline"] = differences[label]
        return out

    def plot(self, path: Path) -> None:
        """Mean ± 95% CI per variant with each seed's score beside it (the matplotlib object API: the caller's
        backend is left alone)."""
        from matplotlib.figure import Figure

        labels = list(self.results)
        fig = Figure(figsize=(1.6 + 1.4 * len(labels), 3.8), layout="tight")
        ax = fig.add_subplot()
        for i, label in enumerate(labels):
            values = list(self.scores(label).values())
            s = summarize(values)
            ax.errorbar([i], [s["mean"]], yerr=[s["ci95"] or 0.0], fmt="o", capsize=6, color="C0")
            ax.scatter([i + 0.08] * len(values), values, s=14, color="C1", zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_ylabel(f"test {self.metric}")
        ax.set_title("mean ± 95% CI over seeds (dots: seeds)")
        save_figure(fig, path, dpi=110)


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


def _check_variants(variants: Sequence[Variant], seeds: Sequence[int], overrides: Sequence[str]) -> None:
    if not variants or not seeds:
        raise ValueError("compare needs at least one variant and one seed")
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise ValueError(f"variant labels must be distinct, got {labels}")
    for label in labels:  # each label is a folder under the output directory
        if label in ("", ".", "..") or label.startswith(".") or "/" in label or "\\" in label:
            raise ValueError(f"variant label {label!r}: must be a plain folder name (no '/', not starting with '.')")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: {list(seeds)} repeats a seed")
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in _MANAGED_KEYS:
            raise ValueError(f"--set {item!r}: compare sets {key} itself (use --seeds and -o)")


def plan_runs(variants: Sequence[Variant], seeds: Sequence[int], output_dir: Path,
              overrides: Sequence[str] = ()) -> list[tuple[Variant, int, Recipe]]:
    """Every (variant, seed, resolved recipe) to run, in order; validates everything before anything trains."""
    _check_variants(variants, seeds, overrides)
    runs = []
    for variant in variants:
        for seed in seeds:
            data = apply_overrides(variant.recipe.to_dict(), list(overrides))
            data["training"]["seed"] = seed
            data["training"]["output_dir"] = str(Path(output_dir) / variant.label / f"seed{seed}")
            runs.append((variant, seed, Recipe.from_dict(data)))
    return runs


def run_comparison(variants: Sequence[Variant], seeds: Sequence[int], output_dir: Path,
                   overrides: Sequence[str] = (), reuse: bool = True,
                   log: Callable[[str], None] = print, workers: int = 1,
                   storage: Optional[str] = None, overwrite: bool = False) -> Comparison:
    """Train every variant with every seed (runs under ``output_dir/<label>/seed<k>``), then write
    ``comparison.json``, ``comparison.md`` and ``comparison.png``.

    Every run folder is judged before anything trains (``run_identity.plan_run_dir``): a finished run of the same
    recipe is reused (with ``reuse``); an unfinished one (a killed attempt) is trained again; a run made with
    another recipe is refused with one line naming the differing keys, unless ``overwrite``. Nothing else is ever
    removed, and a rerun of an identical comparison trains nothing and removes nothing.

    With ``workers > 1`` or a ``storage`` URL, the runs left to train go to the job executor of ``tune``
    (``tune.executor.run_recipes``): ``workers`` processes claim them from one Optuna storage (an SQLite file in
    ``output_dir`` by default, or any database URL for workers on several machines), and a rerun picks up what a
    killed run left, retraining only recipes not finished there."""
    from .train import train

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers: {workers!r} must be >= 1")
    if storage is not None:  # a URL that cannot be opened fails before anything is planned or trained
        from .tune.storage import open_storage

        open_storage(storage)
    output_dir = check_writable_dir(output_dir, "compare output directory")
    runs = plan_runs(variants, seeds, output_dir, overrides)
    decisions = [plan_run_dir(recipe, reuse=reuse, overwrite=overwrite) for _, _, recipe in runs]
    results: dict[int, dict] = {}
    for k, ((variant, seed, recipe), decision) in enumerate(zip(runs, decisions), 1):
        log(f"[{k}/{len(runs)}] {variant.label} seed={seed}")
        if decision.note:
            log(decision.note)
        if decision.action == "reuse":
            results[k] = decision.metrics
        elif workers == 1 and storage is None:
            recipe.training.overwrite = decision.overwrite
            results[k] = train(recipe)
    pending = [k for k in range(1, len(runs) + 1) if k not in results]
    if pending:  # the executor path: in parallel, resumable through the storage
        from .tune.executor import run_recipes
        from .tune.storage import default_storage_url

        log(f"training {len(pending)} runs with {workers} worker(s)")
        metrics_list = run_recipes([runs[k - 1][2] for k in pending], storage or default_storage_url(output_dir),
                                   study="compare", workers=workers, reuse=reuse, overwrite=overwrite,
                                   labels=[f"{runs[k - 1][0].label}/seed{runs[k - 1][1]}" for k in pending])
        results.update(zip(pending, metrics_list))
    comparison: Optional[Comparison] = None
    for k, (variant, seed, recipe) in enumerate(runs, 1):
        if comparison is None:
            comparison = Comparison(metric=results[k]["main_metric"])
        comparison.results.setdefault(variant.label, {})[seed] = results[k]
        comparison.settings.setdefault(variant.label, _settings(variant, recipe, overrides))
    assert comparison is not None
    write_json(output_dir / "comparison.json", comparison.to_dict())
    atomic_write_text(output_dir / "comparison.md", comparison.table() + "\n")
    comparison.plot(output_dir / "comparison.png")
    return comparison


def _settings(variant: Variant, recipe: Recipe, overrides: Sequence[str]) -> dict[str, Any]:
    schedule = recipe.dropout.parsed_schedule()
    return {"recipe": variant.recipe.name, "schedule": schedule.to_dict() if schedule is not None else None,
            "spec": dict(recipe.dropout.parsed_spec().items()), "overrides": list(overrides)}
