"""Bad input and the one line a user sees for it: ``dropout-tune COMMAND`` and ``python -m dropout_tune.train``
(what ``accelerate launch`` runs) catch the same errors and print the same line."""

from __future__ import annotations

import sys

#: Errors that mean bad input (a wrong value, a missing or unreadable file, an unknown name): one line, exit 2.
BAD_INPUT = (ValueError, OSError, KeyError)


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


def report(command: str, err: BaseException) -> int:
    """Print ``err`` as ``dropout-tune COMMAND: error: ...`` on stderr; the exit code: 130 for an interrupt, else 2."""
    if isinstance(err, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    print(f"dropout-tune {command}: error: {error_line(err)}", file=sys.stderr)
    return 2
