"""dropout-tune: dropout as a schedulable, measurable knob when fine-tuning Hugging Face transformers.

The command line has one sub-command per module in dropout_tune/commands. Every sub-command module defines register(subparsers), which adds its parser and sets func. Bad input (ValueError,
OSError such as a missing file, KeyError from validation) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def error_line(err: BaseException) -> str:
    """The one line a user sees for ``err``.

    >>> error_line(KeyError("no task 'x'"))
    "no task 'x'"
    >>> error_line(FileNotFoundError(2, "No such file or directory", "a.yaml"))
    'a.yaml: No such file or directory'
    """
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.strerror and err.filename:
        message = f"{err.filename}: {err.strerror}"
    else:
        message = str(err)
    return (message.strip().splitlines() or [type(err).__name__])[0]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, KeyError) as err:
        print(f"dropout-tune {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
