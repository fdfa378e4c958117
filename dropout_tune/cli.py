"""The ``dropout-tune`` command line: one sub-command per module in :mod:`dropout_tune.commands`.

Every sub-command module defines ``register(subparsers)`` (adds its parser and sets ``func``). Bad input
(``ValueError``, ``FileNotFoundError``, ``KeyError`` from validation) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under dropout_tune.commands; imported lazily so `--help` stays fast.
COMMANDS = {
    "inspect": "inspect",
    "plot-schedule": "plot_schedule",
    "train": "train",
    "data": "data",
    "mc-eval": "mc_eval",
    "compare": "compare",
    "tune": "tune",
    "demo": "demo",
}


class UsageError(ValueError):
    """Bad input from the user: reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropout-tune", description=__doc__.splitlines()[0])
    from . import __version__

    parser.add_argument("--version", action="version", version=f"dropout-tune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(f"dropout_tune.commands.{module_name}")
        except ModuleNotFoundError as err:
            if err.name != f"dropout_tune.commands.{module_name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"dropout-tune {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
