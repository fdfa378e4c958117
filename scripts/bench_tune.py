"""Pruning vs no pruning, side by side in one run: the same number of trials of the same search (same recipe, space
and sampler seed), once with ASHA (successive halving) and once without. Reports the optimizer steps spent and the
best validation metric found by each.

Target (issue 12): pruning reaches within 0.5 point of the unpruned best with at most 50% of the steps.

It also prints the share of the trials' wall time spent outside training and evaluation (``Trainer.train``, which
holds the steps and the evaluations between them, and the final ``Trainer.evaluate``): model load, tokenization,
Trainer set-up, clean-up. Target (issue 19): at most 10% on tune_rotten_tomatoes. Tokenized data is reused across the
trials of a study (``dropout_tune.encoding``'s in-process cache). Measured with ``--workers 1`` (the timers live in
this process); the process start and study load, once per search, are printed apart.

    python scripts/bench_tune.py [--recipe recipes/tune_rotten_tomatoes.yaml] [--trials 16] [-o runs/bench_tune]
    python scripts/bench_tune.py --pruners none --trials 3 -o runs/bench_overhead   # the overhead share alone

Both searches are studies in OUT/<pruner>/study.db: rerunning the command continues them (nothing is retrained).
Time is the trials' own training and evaluation time as the study recorded it (the same on a rerun that reuses them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from dropout_tune.tune.plan import REDUCTION_FACTOR
from dropout_tune.tune.report import compute_spent
from dropout_tune.tune.search import TuneSettings, run_tune


class StepTimer:
    """Seconds inside ``Trainer.train`` and inside ``Trainer.evaluate`` calls made outside it (the trial's final
    evaluation), patched on the class for the duration of a search run in this process."""

    def __init__(self):
        self.seconds = 0.0
        self._depth = 0

    def _timed(self, method):
        timer = self

        def wrapped(*args, **kwargs):
            if timer._depth:  # an evaluation inside train() is already counted
                return method(*args, **kwargs)
            timer._depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start
                timer._depth -= 1

        return wrapped

    @contextlib.contextmanager
    def patched(self):
        from transformers import Trainer

        train, evaluate = Trainer.train, Trainer.evaluate
        Trainer.train, Trainer.evaluate = self._timed(train), self._timed(evaluate)
        try:
            yield self
        finally:
            Trainer.train, Trainer.evaluate = train, evaluate


def measure(args, pruner: str) -> dict:
    timer = StepTimer()
    started = time.perf_counter()
    with timer.patched():
        result = run_tune(TuneSettings(args.recipe, str(Path(args.output) / pruner), trials=args.trials,
                                       pruner=pruner, confirm_seeds=0, seed=args.seed, workers=args.workers,
                                       overrides=tuple(args.overrides)))
    search_s = time.perf_counter() - started
    spent = compute_spent(result.records)
    states = [r.state for r in result.records]
    label = f"asha (factor {REDUCTION_FACTOR})" if pruner == "asha" else pruner
    return {"pruner": label, "trials": args.trials, "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"), "steps": spent["steps"],
            "budget_steps": spent["budget_steps"], "best": result.best.value if result.best else None,
            "best_trial": result.best.number if result.best else None,
            "trial_s": round(sum(r.duration_s or 0.0 for r in result.records), 1),
            "metric": result.plan.metric, **overhead(result.records, timer.seconds, search_s, args.workers)}


def overhead(records, steps_s: float, search_s: float, workers: int) -> dict:
    """The share of the trials' wall time outside Trainer.train / the final evaluate (None when the trials ran in
    other processes or were reused from an earlier run: nothing was timed here)."""
    trial_s = sum(r.duration_s or 0.0 for r in records)
    if workers != 1 or steps_s == 0.0 or trial_s == 0.0:
        return {"overhead_share": None, "steps_s": None, "search_s": round(search_s, 1)}
    return {"overhead_share": max(trial_s - steps_s, 0.0) / trial_s, "steps_s": round(steps_s, 1),
            "trials_wall_s": round(trial_s, 1), "search_s": round(search_s, 1)}


def overhead_line(r: dict) -> str:
    if r["overhead_share"] is None:
        return (f"{r['pruner']}: overhead share not measured (trials ran in worker processes or were reused; "
                f"measure with --workers 1 into a new -o)")
    return (f"{r['pruner']}: {r['overhead_share']:.1%} of the trials' wall time outside training and evaluation "
            f"({r['trials_wall_s'] - r['steps_s']:.1f} s of {r['trials_wall_s']:.1f} s: model load, tokenization, "
            f"Trainer set-up, clean-up; target <= 10%: {'met' if r['overhead_share'] <= 0.10 else 'not met'}); "
            f"whole command {r['search_s']:.1f} s, of which outside the trials (start, study, reports) "
            f"{r['search_s'] - r['trials_wall_s']:.1f} s")


def table(rows: list[dict]) -> str:
    lines = [f"| pruner | trials (complete / pruned) | optimizer steps | best validation {rows[0]['metric']} | "
             f"trial time |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['pruner']} | {r['trials']} ({r['complete']} / {r['pruned']}) | {r['steps']} | "
                     f"{r['best']:.4f} | {r['trial_s'] / 60:.1f} min |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/tune_rotten_tomatoes.yaml")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="sampler seed, the same for both searches")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--pruners", nargs="+", choices=("asha", "none"), default=["asha", "none"],
                        help="which searches to run (both: the pruning comparison; one: the overhead share alone)")
    parser.add_argument("-o", "--output", default="runs/bench_tune")
    args = parser.parse_args(argv)
    rows = [measure(args, pruner) for pruner in args.pruners]
    summary: dict = {"rows": rows}
    lines = [table(rows), ""]
    if len(rows) == 2:
        asha, none = rows
        step_ratio = asha["steps"] / none["steps"]
        gap = none["best"] - asha["best"]
        lines += [f"pruning: {step_ratio:.0%} of the steps (target <= 50%), best {gap * 100:+.2f} points below the "
                  f"unpruned best (target <= 0.5): {'met' if step_ratio <= 0.5 and gap <= 0.005 else 'not met'}", ""]
        summary.update(step_ratio=step_ratio, gap=gap)
    lines += [overhead_line(r) for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.output)
    (out / "bench_tune.md").write_text(text)
    (out / "bench_tune.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
