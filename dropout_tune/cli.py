"""dropout-tune: dropout as a schedulable, measurable knob when fine-tuning Hugging Face transformers.

The command line has one sub-command per module in dropout_tune/commands. Every sub-command module defines register(subparsers), which adds its parser and sets func. Bad input (ValueError,
OSError such as a missing file, KeyError from validation) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import BAD_INPUT, error_line, report  # noqa: F401 - error_line: this module's API too

# name -> module under dropout_tune.commands; each module imports its heavy dependencies inside run(), so that
# `--help` stays fast.
COMMANDS = {
    "inspect": "inspect",
    "plot-schedule": "plot_schedule",
    "train": "train",
    "recipes": "recipes",
    "data": "data",
    "mc-eval": "mc_eval",
    "uncertainty": "uncertainty",
    "compare": "compare",
    "tune": "tune",
    "dashboard": "dashboard",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="dropout-tune", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dropout-tune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        # a command that fails to import is a broken installation: let the error surface
        importlib.import_module(f"dropout_tune.commands.{module_name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None):
        # options between positionals (train RECIPE --overwrite key=value): the command's own parser reads them
        # intermixed, as python -m dropout_tune.train does
        command_parser = parser._subparsers._group_actions[0].choices[args.command]
        try:
            args = command_parser.parse_intermixed_args(argv[argv.index(args.command) + 1:], namespace=args)
        except TypeError:  # a command with sub-commands of its own cannot be read intermixed
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (*BAD_INPUT, KeyboardInterrupt) as err:
        return report(args.command, err)


if __name__ == "__main__":
    sys.exit(main())
