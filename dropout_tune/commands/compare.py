"""dropout-tune compare RECIPE [RECIPE ...] [--schedule LABEL=SCHEDULE ...] --seeds 1 2 3: train each variant with
each seed, print mean ± 95% CI per variant and paired differences against the first (Holm-adjusted p-values with
three or more variants), and write comparison.json, comparison.md and comparison.png.

A finished run under the output directory is reused when it was made with the same resolved recipe, so an identical
rerun trains nothing and removes nothing. A folder holding a run made with another recipe is refused before anything
trains (naming the differing keys) unless --overwrite."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="compare dropout schedules over seeds", description=__doc__)
    parser.add_argument("recipes", nargs="+", metavar="RECIPE",
                        help="recipe YAML files or shipped recipe names (each one a variant)")
    parser.add_argument("--schedule", action="append", default=[], metavar="LABEL=SCHEDULE",
                        help="variants of the first recipe that differ only in their dropout schedule "
                             "(compact form, e.g. off70=all=off_after:0.1:at=0.7)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="recipe override applied to every variant, e.g. data.max_train=2000")
    parser.add_argument("-o", "--output", default="runs/compare", help="output directory (default: %(default)s)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="retrain runs that already have metrics.json (their files are replaced)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace runs in the output directory that were made with another recipe")
    parser.add_argument("--workers", type=int, default=1,
                        help="train runs in parallel in this many processes (one device each where there are "
                             "several), through the job executor of tune (default: %(default)s, in this process)")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage URL the runs are claimed from and recorded in (default with "
                             "--workers > 1: an SQLite file in the output directory); a rerun resumes from it")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..compare import run_comparison, variants_from
    from ..recipe import Recipe
    from ..recipe_catalog import resolve_recipe

    recipes = [Recipe.from_yaml(resolve_recipe(name)) for name in args.recipes]
    variants = variants_from(recipes, args.schedule)
    comparison = run_comparison(variants, args.seeds, args.output, args.overrides, reuse=not args.no_reuse,
                                workers=args.workers, storage=args.storage, overwrite=args.overwrite)
    print(comparison.table())
    print(f"written: {args.output}/comparison.json, comparison.md, comparison.png")
    return 0
