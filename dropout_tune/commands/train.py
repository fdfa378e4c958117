"""dropout-tune train RECIPE [key=value ...]: fine-tune in one process. RECIPE is a YAML file or the name of a
shipped recipe (dropout-tune recipes list); a file that exists wins over a name. For several processes use
accelerate launch -m dropout_tune.train."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune from a recipe", description=__doc__)
    parser.add_argument("recipe", help="recipe YAML file, or a shipped recipe's name (e.g. rotten_tomatoes)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. training.epochs=2 data.max_train=500")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in the output directory (same as training.overwrite=true)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..train import run_cli

    return run_cli(args.recipe, args.overrides, overwrite=args.overwrite)
