"""``dropout-tune train RECIPE.yaml [key=value ...]``: one process; use ``accelerate launch -m dropout_tune.train``
for several."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune from a recipe", description=__doc__)
    parser.add_argument("recipe", help="recipe YAML file (see recipes/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. training.epochs=2 data.max_train=500")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in the output directory (same as training.overwrite=true)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..train import run_cli

    return run_cli(args.recipe, args.overrides, overwrite=args.overwrite)
