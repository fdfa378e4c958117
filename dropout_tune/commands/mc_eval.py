"""dropout-tune mc-eval RUN_DIR_OR_MODEL [--task TASK]: MC-dropout evaluation with calibration metrics.

Writes mc_eval.json (metrics of the deterministic and the MC prediction side by side, the rates sampled per role,
uncertainty summaries, reliability bins, OOD AUROC with --ood-task) and reliability.png into --output (default: the
run directory, or ./mc_eval for a model), and prints a table. For a run directory, the run's recipe.yaml gives the
defaults: task, data limits (data.max_eval), mc_eval settings and the rates to sample (mc_eval.spec, else each
role's nominal training rate: its schedule's peak, else dropout.spec, else the model's). Under accelerate launch
with several processes every example is counted once and the main process writes.

Example:
    dropout-tune mc-eval runs/rt --samples 20 --mode trunk --stochastic-layers 1 --ood-task snli
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..mc import MODES


def register(subparsers) -> None:
    parser = subparsers.add_parser("mc-eval", help="MC-dropout evaluation: calibration and uncertainty",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN_DIR_OR_MODEL",
                        help="a run directory (with model/), a saved model directory, 'minilm' or a hub id")
    parser.add_argument("--task", default=None, help="task of the data registry or a local file (default: the run's "
                                                     "recipe data.task)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--data-dir", default=None, help="local GLUE-format files for GLUE tasks")
    parser.add_argument("--samples", "-T", type=int, default=None,
                        help="stochastic passes (default: the run's mc_eval.samples, else 20)")
    parser.add_argument("--mode", default=None, choices=MODES, help="default: the run's mc_eval.mode, else loop")
    parser.add_argument("--stochastic-layers", type=int, default=None, metavar="K",
                        help="with --mode trunk: sample only the top K layers and the head")
    parser.add_argument("--spec", default=None,
                        help="stochastic roles and rates, e.g. 'attention=0.1,hidden=0.1'; only these roles are "
                             "sampled (default: the run's mc_eval.spec, else each role's nominal training rate; "
                             "for a model without a run, every site at its configured rate)")
    parser.add_argument("--ood-task", default=None, help="out-of-distribution task: adds OOD AUROC")
    parser.add_argument("--output", "-o", default=None, help="output directory")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None, help="tokens (default: the recipe's, else 128)")
    parser.add_argument("--max-examples", type=int, default=None,
                        help="evaluate a seeded subset of N examples (default: the run's data.max_eval, else all)")
    parser.add_argument("--max-batch", type=int, default=None, help="rows per forward in replicate / trunk modes")
    parser.add_argument("--bins", type=int, default=15, help="calibration bins (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.set_defaults(func=run)


def _check_positive(args, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")


def _options(args, recipe) -> dict:
    """evaluate() keyword arguments: the run's recipe first, the flags given on the command line winning."""
    from ..evaluation import recipe_options

    options = recipe_options(recipe) if recipe is not None else {}
    if args.task is not None:
        if args.task != options.get("task"):
            options["task_options"] = {}  # the recipe's text/label columns belong to its own task
        options["task"] = args.task
    if args.mode is not None:
        options["mode"], options["stochastic_layers"] = args.mode, args.stochastic_layers
    elif args.stochastic_layers is not None:
        options["stochastic_layers"] = args.stochastic_layers
    given = {"samples": args.samples, "spec": args.spec, "data_dir": args.data_dir, "max_length": args.max_length,
             "max_examples": args.max_examples}
    options.update({k: v for k, v in given.items() if v is not None})
    options.update(split=args.split, ood_task=args.ood_task, batch_size=args.batch_size, max_batch=args.max_batch,
                   n_bins=args.bins, seed=args.seed)
    return options


def run(args) -> int:
    from ..data import get_task
    from ..distributed import accelerator_session
    from ..evaluation import (RESULT_FILE, DIAGRAM_FILE, evaluate, format_table, pick_device, read_run_recipe,
                              resolve_model_source)
    from ..files import check_writable_dir
    from ..mc import validate_options
    from ..runtime import is_main_process
    from ..spec import DropoutSpec

    _check_positive(args, "samples", "batch_size", "max_length", "max_examples", "max_batch", "bins")
    model_path, run_dir = resolve_model_source(args.model)
    options = _options(args, read_run_recipe(run_dir) if run_dir is not None else None)
    if not options.get("task"):
        raise ValueError("--task: required (no run directory recipe to take data.task from)")
    for flag, task in (("--task", options["task"]), ("--ood-task", args.ood_task)):
        if task is not None and not Path(str(task)).expanduser().exists():
            try:
                get_task(task)  # an unknown name fails here, before the slow model load
            except ValueError as err:
                raise ValueError(f"{flag}: {err}") from None
    if options.get("spec") is not None:
        try:
            DropoutSpec.coerce(options["spec"])
        except ValueError as err:
            raise ValueError(f"--spec: {err}") from None
    validate_options(options.setdefault("samples", 20), options.setdefault("mode", "loop"),
                     options.get("stochastic_layers"), args.max_batch)
    device = pick_device(args.device)  # checked before the output folder is made
    output = Path(args.output) if args.output else (run_dir if run_dir is not None else Path("mc_eval"))
    check_writable_dir(output, what="--output")

    from transformers import AutoTokenizer

    from ..loading import load_model

    kwargs = {}
    if run_dir is None and not Path(args.model).expanduser().is_dir():
        try:  # a base model (hub id, minilm) gets a head sized for the task
            kwargs["num_labels"] = get_task(options["task"]).num_labels
        except ValueError:
            pass
    with accelerator_session() as accelerator:  # several processes: the group ends before exit
        device = accelerator.device if accelerator is not None else device
        model = load_model(model_path, **kwargs).to(device)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        result = evaluate(model, tokenizer, output_dir=output, accelerator=accelerator, progress=True, **options)
    if is_main_process():
        print(format_table(result))
        written = [RESULT_FILE] + ([DIAGRAM_FILE] if "reliability" in result else [])
        print(f"\nwrote {', '.join(str(output / name) for name in written)}")
    return 0
