"""dropout-tune plot-schedule SCHEDULE --steps N -o schedule.png: draw each role's dropout rate over training.

SCHEDULE is the compact form (hidden=early:0.1:until=0.3,attention=0.1) or a YAML/JSON file holding the dict form
(at top level or under dropout_schedule). Long runs are drawn from at most 2000 evaluated steps, every jump at its
exact step.
"""

from __future__ import annotations

from ..schedule_plot import load_schedule, plot_schedule  # noqa: F401  (plot_schedule: also imported from here)


def register(subparsers) -> None:
    parser = subparsers.add_parser("plot-schedule", help="plot a dropout schedule's rate per role over training",
                                   description=__doc__)
    parser.add_argument("schedule", metavar="SCHEDULE",
                        help="compact schedule (e.g. 'hidden=early:0.1:until=0.3,attention=0.1') or a YAML/JSON file")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps in training (default: %(default)s)")
    parser.add_argument("-o", "--output", default="schedule.png", help="image to write (default: %(default)s)")
    parser.add_argument("--title", help="plot title (default: the schedule in compact form)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..figures import image_format, save_figure
    from ..files import check_writable_file

    if args.steps <= 0:
        raise ValueError(f"--steps: {args.steps} must be a positive number of optimizer steps")
    check_writable_file(args.output, what="-o")
    image_format(args.output)
    schedule_set = load_schedule(args.schedule)
    save_figure(plot_schedule(schedule_set, args.steps, title=args.title), args.output)
    print(f"wrote {args.output}: {', '.join(schedule_set.roles)} over {args.steps} steps")
    return 0
