"""Progress a person can follow: one line per finished trial (``[trial k/N] params ... value (elapsed, ETA)``) and per
confirm run (``[confirm k/M] variant seed``), printed and appended to a plain-text log, ``OUT/tune.log``, that
survives the search (each line there with its time). Worker processes append to the same file, a whole line at a
time.

Example:
    >>> duration(0.4), duration(75), duration(3725)
    ('0s', '1m15s', '1h02m')
    >>> trial_line(3, 20, 7, {"rate.hidden": 0.123456, "shape": "early"}, "COMPLETE", 0.81234, None, 95.0, 500.0)
    '[trial 3/20] #7 rate.hidden=0.1235 shape=early: 0.8123 (1m35s, ETA 8m20s)'
    >>> trial_line(4, 20, 8, {}, "PRUNED", 0.7, "step 30/120", 100.0, None)
    '[trial 4/20] #8: pruned at step 30/120, 0.7000 (1m40s)'
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

LOG_FILE = "tune.log"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(k: int, n: int, number: int, params: Mapping[str, Any], state: str, value: Optional[float],
               where: Optional[str], elapsed_s: float, eta_s: Optional[float],
               values: Optional[Mapping[str, float]] = None) -> str:
    """One finished trial: its place among the N wanted, number, parameters, outcome (``values``: each objective's,
    with several), time so far and left."""
    shown = "".join(f" {name}={_value(v)}" for name, v in params.items())
    score = "no value" if value is None else f"{value:.4f}"
    if values:
        score = " ".join(f"{name} {v:.4f}" for name, v in values.items())
    outcome = {"COMPLETE": score, "PRUNED": f"pruned{f' at {where}' if where else ''}, {score}"}.get(
        state, f"{state.lower()}{f' ({where})' if where else ''}")
    timing = duration(elapsed_s) + ("" if eta_s is None else f", ETA {duration(eta_s)}")
    return f"[trial {k}/{n}] #{number}{shown}: {outcome} ({timing})"


class ProgressLog:
    """Prints a line and appends it, with the time, to ``OUT/tune.log`` (picklable: worker processes use it)."""

    def __init__(self, output_dir: Union[str, "os.PathLike[str]"], name: str = LOG_FILE):
        self.path = str(Path(output_dir) / name)

    def __call__(self, line: str, echo: bool = True) -> None:
        if echo:
            print(line, flush=True)
        self.write(line)

    def write(self, text: str) -> None:
        """Append ``text`` (one or more lines) to the log only."""
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        lines = "".join(f"{stamp} {line}\n" for line in str(text).splitlines() or [""])
        with open(self.path, "a", encoding="utf-8") as handle:  # one write per call: lines of workers do not mix
            handle.write(lines)


class ConfirmProgress:
    """``[confirm k/M] variant seed S`` as a confirm run starts (the executor calls it with the job's index, the
    number of jobs and its label ``variant/seedS``)."""

    def __init__(self, log: ProgressLog):
        self.log = log

    def __call__(self, index: int, total: int, label: str) -> None:
        variant, _, seed = label.rpartition("/seed")
        self.log(f"[confirm {index + 1}/{total}] {variant or label} seed {seed}" if variant else
                 f"[confirm {index + 1}/{total}] {label}")
