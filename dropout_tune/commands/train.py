"""dropout-tune train RECIPE [key=value ...]: the parser is :func:`dropout_tune.train.train_parser`, shared with
``python -m dropout_tune.train`` (what accelerate launch runs), so both take and refuse the same input."""

from __future__ import annotations


def register(subparsers) -> None:
    from ..train import train_parser

    train_parser(subparsers).set_defaults(func=run)


def run(args) -> int:
    from ..train import run_cli

    return run_cli(args.recipe, args.overrides, overwrite=args.overwrite)
