"""Drawing a dropout schedule: each role's rate per optimizer step, on a matplotlib Figure (never pyplot, so the
caller's backend is left as it is).

A schedule is a pure function of the step, so a long run needs no loop over every step: the rate is evaluated at
up to max_points steps, evenly spaced plus the exact step of each change found between two of them.

Example:
    >>> from dropout_tune.schedules import ScheduleSet
    >>> s = ScheduleSet.parse("hidden=off_after:0.1:at=0.5")
    >>> steps = sample_steps(s, 100_000_000)
    >>> len(steps) <= 2000, 50_000_000 in steps, s.rates_at(49_999_999, 100_000_000)["hidden"]
    (True, True, 0.1)
"""

from __future__ import annotations

import os
import textwrap
from typing import Any, Optional

from .schedules import ScheduleSet

MAX_POINTS = 2000
_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_LINE_STYLES = ("-", "--", "-.", ":")


def load_schedule(text: str) -> ScheduleSet:
    """A file path (YAML/JSON holding the dict form) when it exists or looks like one, else the compact string.
    Unreadable files and YAML syntax errors are one-line ``ValueError``s naming the file."""
    import yaml

    if not (os.path.isfile(text) or text.lower().endswith(_FILE_SUFFIXES)):
        return ScheduleSet.parse(text)
    try:
        return ScheduleSet.from_file(text)
    except yaml.MarkedYAMLError as err:
        where = f" (line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1})" if err.problem_mark else ""
        raise ValueError(f"{text}: not valid YAML: {err.problem or err.context}{where}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{text}: not valid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{text}: not a text file") from None
    except IsADirectoryError:
        raise ValueError(f"{text}: is a directory, not a schedule file") from None


def sample_steps(schedule_set: ScheduleSet, total_steps: int, max_points: int = MAX_POINTS) -> list[int]:
    """The steps at which to evaluate the schedule for a plot: all of them when there are at most ``max_points``;
    otherwise ``max_points // 2`` evenly spaced ones plus, for each role, the exact step of every jump between two
    of them (found by bisection), so a cutoff is drawn where it happens while slopes stay smooth."""
    if total_steps <= max_points:
        return list(range(total_steps))
    count = max(2, max_points // 2)
    grid = sorted({round(i * (total_steps - 1) / (count - 1)) for i in range(count)})
    steps = set(grid)
    for _, schedule in schedule_set.items():
        rates = [schedule.at_step(step, total_steps) for step in grid]
        for left, right, before, after in zip(grid, grid[1:], rates, rates[1:]):
            if before != after:
                step = _jump_in(schedule, total_steps, left, right)
                if step is not None:
                    steps.add(step)
    return sorted(steps)


def _jump_in(schedule: Any, total_steps: int, left: int, right: int) -> Optional[int]:
    """The step between ``left`` and ``right`` where the rate crosses half-way from its value at ``left`` to its
    value at ``right`` (bisection); returned only when that one step carries at least half of the change (a jump,
    not a slope)."""
    def rate(step: int) -> float:
        return schedule.at_step(step, total_steps)

    start, change = rate(left), rate(right) - rate(left)
    low, high = left, right  # |rate(low) - start| < |change| / 2 <= |rate(high) - start|
    while high - low > 1:
        middle = (low + high) // 2
        if abs(rate(middle) - start) < abs(change) / 2:
            low = middle
        else:
            high = middle
    return high if abs(rate(high) - rate(high - 1)) >= abs(change) / 2 else None


def plot_schedule(schedule_set: ScheduleSet, total_steps: int, ax: Any = None, title: Optional[str] = None,
                  max_points: int = MAX_POINTS):
    """Draw each role's rate over steps ``0 .. total_steps - 1`` on ``ax`` (a new Figure if None); returns the
    figure. The rate is constant within a step, hence the step-style lines."""
    steps = sample_steps(schedule_set, total_steps, max_points)
    rates = [schedule_set.rates_at(step, total_steps) for step in steps]
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7, 3.5), layout="constrained").add_subplot()
    for i, role in enumerate(schedule_set.roles):
        # Line styles tell overlapping roles apart.
        ax.step(steps + [total_steps], [r[role] for r in rates] + [rates[-1][role]], where="post", label=role,
                linestyle=_LINE_STYLES[i % len(_LINE_STYLES)], linewidth=1.8)
    ax.set_xlim(0, total_steps)
    highest = max(max(r.values()) for r in rates) or 0.1
    ax.set_ylim(-0.03 * highest, 1.08 * highest)  # a margin below 0 keeps rates at 0 visible over the axis
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("dropout rate p")
    ax.secondary_xaxis("top", functions=(lambda s: s / total_steps, lambda t: t * total_steps)).set_xlabel(
        "progress")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    if title is None:
        title = "\n".join(textwrap.wrap(schedule_set.to_string().replace(",", ", "), 90))
    ax.set_title(title, fontsize="small")
    return ax.figure
