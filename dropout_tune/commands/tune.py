"""dropout-tune tune RECIPE --trials N [-o OUT]: search dropout configurations (per-role rates, schedule shape, label
smoothing, weight decay) with Optuna (default; resumable in an SQLite file or any database) or Ray Tune, then
confirm the best one against the recipe's own over seeds on the test split. See docs/tune.md."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("tune", help="search dropout configurations (Optuna or Ray Tune)",
                                   description=__doc__)
    parser.add_argument("recipe", help="recipe YAML file or a shipped recipe's name; its search: section is the space unless --space is given")
    parser.add_argument("--trials", type=int, required=True, metavar="N",
                        help="finished trials wanted (complete or pruned); rerun with more to continue the study")
    parser.add_argument("--space", metavar="SPACE.yaml", help="search space file (default: the recipe's search: "
                        "section, else rates in [0, 0.3] for every role, five shapes, label smoothing, weight decay)")
    parser.add_argument("--workers", type=int, default=1, metavar="K",
                        help="worker processes sharing the study (one device each where there are several)")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///OUT/study.db); "
                        "a database such as postgresql+psycopg://USER:PASSWORD@HOST/DB (pip install "
                        "'dropout-tune[postgres]') lets workers on several machines share the study; journal:PATH "
                        "is one file they append to on a shared file system")
    parser.add_argument("--study", metavar="NAME", help="study name (default: the recipe's name)")
    parser.add_argument("--backend", choices=("optuna", "ray"), default="optuna", help="search engine (default: "
                        "%(default)s)")
    parser.add_argument("--pruner", choices=("asha", "none"), default="asha",
                        help="asha: successive halving on the validation metric at each evaluation (default)")
    parser.add_argument("--confirm-seeds", type=int, default=3, metavar="S",
                        help="re-train the best and the recipe's own configuration over S seeds and compare them on "
                             "the test split (default: %(default)s; 0 skips it)")
    parser.add_argument("--objective", metavar="METRIC[,METRIC...]",
                        help="validation metric(s) to optimise, each in its direction (nll, ece, brier, mce, "
                             "adaptive_ece minimised; others maximised); several make a multi-objective search "
                             "with a Pareto front and no pruning (default: the task's main metric)")
    parser.add_argument("--constraint", action="append", default=[], metavar="METRIC<=X",
                        help="keep the search inside a bound on a final validation metric, e.g. \"ece<=0.05\" "
                             "(Optuna's constraints_func; repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: %(default)s)")
    parser.add_argument("--ray-address", metavar="ADDRESS", help="address of an existing Ray cluster (default: a local Ray)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="recipe override, e.g. data.max_train=2000 or search.rate=[0,0.2]")
    parser.add_argument("-o", "--output", metavar="OUT", help="output directory (default: runs/tune/RECIPE_NAME)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..tune.search import TuneSettings, run_tune

    output = args.output or str(Path("runs") / "tune" / Path(args.recipe).stem)
    settings = TuneSettings(recipe_path=args.recipe, output_dir=output, trials=args.trials, space_path=args.space,
                            overrides=tuple(args.overrides), workers=args.workers, storage=args.storage,
                            study=args.study, backend=args.backend, pruner=args.pruner,
                            confirm_seeds=args.confirm_seeds, seed=args.seed, ray_address=args.ray_address,
                            objective=args.objective, constraints=tuple(args.constraint))
    try:
        result = run_tune(settings)
    except RuntimeError as err:  # a worker or trials failed: their errors are above; rerunning continues
        print(f"dropout-tune tune: error: {err}", file=sys.stderr)
        return 1
    if result.best is None:
        print("no trial completed; see trials.csv")
    else:
        print(f"best: trial {result.best.number}, validation {result.best.value:.4f}")
    if result.confirm is not None:
        print(result.confirm.table())
        print(result.confirm.verdict())
    print(f"written: {output}/report.md, trials.csv, best_recipe.yaml, history.png, importance.png, tune.log")
    return 0
