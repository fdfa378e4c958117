"""Pruning vs no pruning, side by side in one run: the same number of trials of the same search (same recipe, space
and sampler seed), once with ASHA (successive halving) and once without. Reports the optimizer steps spent and the
best validation metric found by each.

Target (issue 12): pruning reaches within 0.5 point of the unpruned best with at most 50% of the steps.

    python scripts/bench_tune.py [--recipe recipes/tune_rotten_tomatoes.yaml] [--trials 16] [-o runs/bench_tune]

Both searches are studies in OUT/<pruner>/study.db: rerunning the command continues them (nothing is retrained).
Time is the trials' own training and evaluation time as the study recorded it (the same on a rerun that reuses them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dropout_tune.tune.plan import REDUCTION_FACTOR
from dropout_tune.tune.report import compute_spent
from dropout_tune.tune.search import TuneSettings, run_tune


def measure(args, pruner: str) -> dict:
    result = run_tune(TuneSettings(args.recipe, str(Path(args.output) / pruner), trials=args.trials, pruner=pruner,
                                   confirm_seeds=0, seed=args.seed, workers=args.workers,
                                   overrides=tuple(args.overrides)))
    spent = compute_spent(result.records)
    states = [r.state for r in result.records]
    label = f"asha (factor {REDUCTION_FACTOR})" if pruner == "asha" else pruner
    return {"pruner": label, "trials": args.trials, "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"), "steps": spent["steps"],
            "budget_steps": spent["budget_steps"], "best": result.best.value if result.best else None,
            "best_trial": result.best.number if result.best else None,
            "trial_s": round(sum(r.duration_s or 0.0 for r in result.records), 1),
            "metric": result.plan.metric}


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
    parser.add_argument("-o", "--output", default="runs/bench_tune")
    args = parser.parse_args(argv)
    rows = [measure(args, "asha"), measure(args, "none")]
    asha, none = rows
    step_ratio = asha["steps"] / none["steps"]
    gap = none["best"] - asha["best"]
    verdict = (f"pruning: {step_ratio:.0%} of the steps (target <= 50%), best {gap * 100:+.2f} points below the "
               f"unpruned best (target <= 0.5): {'met' if step_ratio <= 0.5 and gap <= 0.005 else 'not met'}")
    text = table(rows) + "\n\n" + verdict + "\n"
    print(text)
    out = Path(args.output)
    (out / "bench_tune.md").write_text(text)
    (out / "bench_tune.json").write_text(json.dumps({"rows": rows, "step_ratio": step_ratio, "gap": gap}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
