"""``dropout-tune plot-schedule SCHEDULE --steps N -o schedule.png``: draw each role's dropout rate over training.

SCHEDULE is the compact form (``hidden=early:0.1:until=0.3,attention=0.1``) or a YAML/JSON file holding the dict
form (at top level or under ``dropout_schedule``).
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

from ..schedules import ScheduleSet

_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_LINE_STYLES = ("-", "--", "-.", ":")


def register(subparsers) -> None:
    parser = subparsers.add_parser("plot-schedule", help="plot a dropout schedule's rate per role over training",
                                   description=__doc__)
    parser.add_argument("schedule", metavar="SCHEDULE",
                        help="compact schedule (e.g. 'hidden=early:0.1:until=0.3,attention=0.1') or a YAML/JSON file")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps in training (default: %(default)s)")
    parser.add_argument("-o", "--output", default="schedule.png", help="image to write (default: %(default)s)")
    parser.add_argument("--title", help="plot title (default: the schedule in compact form)")
    parser.set_defaults(func=run)


def load_schedule(text: str) -> ScheduleSet:
    """A file path (YAML/JSON) when it exists or looks like one, else the compact string."""
    if os.path.isfile(text) or text.lower().endswith(_FILE_SUFFIXES):
        return ScheduleSet.from_file(text)  # a missing file raises FileNotFoundError: a one-line CLI error
    return ScheduleSet.parse(text)


def plot_schedule(schedule_set: ScheduleSet, total_steps: int, ax: Any = None, title: str | None = None):
    """Draw each role's rate for steps ``0 .. total_steps - 1`` on ``ax`` (a new figure if None); returns the
    figure. The rate is constant within a step, hence the step-style lines."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    steps = list(range(total_steps))
    rates = [schedule_set.rates_at(step, total_steps) for step in steps]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
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


def run(args) -> int:
    if args.steps <= 0:
        raise ValueError(f"--steps: {args.steps} must be a positive number of optimizer steps")
    schedule_set = load_schedule(args.schedule)
    figure = plot_schedule(schedule_set, args.steps, title=args.title)
    figure.savefig(args.output, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(figure)
    print(f"wrote {args.output}: {', '.join(schedule_set.roles)} over {args.steps} steps")
    return 0
