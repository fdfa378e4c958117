"""dropout-tune demo: fine-tune the embedded MiniLM on Rotten Tomatoes (the shipped rotten_tomatoes recipe) with two
dropout schedules (0.1 throughout vs off for the last 30%), evaluate, and print a comparison table. About 4 minutes
on 2 CPU cores."""

from __future__ import annotations

DEMO_RECIPE = "rotten_tomatoes"
DEMO_SCHEDULES = ["constant-0.1=all=0.1", "off-after-70%=all=off_after:0.1:at=0.7"]


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="the offline demo: two schedules on Rotten Tomatoes",
                                   description=__doc__)
    parser.add_argument("--max-train", type=int, default=2000, help="training examples (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("-o", "--output", default="runs/demo", help="output directory (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..compare import run_comparison, variants_from
    from ..recipe import Recipe
    from ..recipe_catalog import packaged_recipe

    if args.max_train <= 0:
        raise ValueError(f"--max-train: {args.max_train} must be > 0")
    base = Recipe.from_yaml(packaged_recipe(DEMO_RECIPE))  # a missing recipe is an error, never a stand-in
    variants = variants_from([base], DEMO_SCHEDULES)
    overrides = [f"data.max_train={args.max_train}", "training.eval_strategy=no"]
    comparison = run_comparison(variants, args.seeds, args.output, overrides, reuse=False)
    print()
    print(f"MiniLM (all-MiniLM-L6-v2) on Rotten Tomatoes, {args.max_train} training examples, seeds {args.seeds}:")
    print(comparison.table())
    print(f"runs, plots and comparison.json under {args.output}/")
    return 0
