"""dropout-tune mc-eval RUN_DIR_OR_MODEL --task TASK: MC-dropout evaluation with calibration metrics.

Writes mc_eval.json (metrics of the deterministic and the MC prediction side by side, uncertainty summaries,
reliability bins, OOD AUROC with --ood-task) and reliability.png into --output (default: the run directory,
or ./mc_eval for a model name), and prints a table. Under accelerate launch with several processes every
example is counted once and the main process writes. A training run calls evaluate() directly.

Example:
    dropout-tune mc-eval runs/rt --samples 20 --mode trunk --stochastic-layers 1 --ood-task snli
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

from ..mc import MODES

OOD_SCORES = ("mutual_information", "predictive_entropy", "variation_ratio")


def register(subparsers) -> None:
    parser = subparsers.add_parser("mc-eval", help="MC-dropout evaluation: calibration and uncertainty",
                                   description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN_DIR_OR_MODEL",
                        help="a run directory (with model/), a saved model directory, 'minilm' or a hub id")
    parser.add_argument("--task", default=None, help="task of the data registry or a local file (default: the run's "
                                                     "recipe data.task)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--data-dir", default=None, help="local GLUE-format files for GLUE tasks")
    parser.add_argument("--samples", "-T", type=int, default=20, help="stochastic passes (default: %(default)s)")
    parser.add_argument("--mode", default="loop", choices=MODES)
    parser.add_argument("--stochastic-layers", type=int, default=None, metavar="K",
                        help="with --mode trunk: sample only the top K layers and the head")
    parser.add_argument("--spec", default=None,
                        help="stochastic roles and rates, e.g. 'attention=0.1,hidden=0.1' (default: every site at "
                             "its trained rate)")
    parser.add_argument("--ood-task", default=None, help="out-of-distribution task: adds OOD AUROC")
    parser.add_argument("--output", "-o", default=None, help="output directory")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None, help="tokens (default: the recipe's, else 128)")
    parser.add_argument("--max-examples", type=int, default=None, help="evaluate only the first N examples")
    parser.add_argument("--max-batch", type=int, default=None, help="rows per forward in replicate / trunk modes")
    parser.add_argument("--bins", type=int, default=15, help="calibration bins (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.set_defaults(func=run)


# ---- loading -------------------------------------------------------------------------------------------------------


def _recipe_data(run_dir: Path) -> dict:
    """The ``data`` section of a run directory's ``recipe.yaml`` ({} when there is none)."""
    recipe = run_dir / "recipe.yaml"
    if not recipe.is_file():
        return {}
    import yaml

    data = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    return dict(data.get("data") or {}) if isinstance(data, dict) else {}


def resolve_model(name_or_path: str) -> tuple[str, Optional[Path], dict]:
    """(model path or name, run directory or None, recipe data section)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "model" / "config.json").is_file():
        return str(path / "model"), path, _recipe_data(path)
    if path.is_dir() and (path / "config.json").is_file():
        return str(path), None, {}
    if path.exists() or str(name_or_path).startswith(("/", "./", "../")):
        raise FileNotFoundError(f"{name_or_path!r} is neither a run directory (with model/config.json) nor a model "
                                f"directory (with config.json)")
    return str(name_or_path), None, {}


def _tokenized(dataset, tokenizer, text_columns, max_length: int):
    columns = list(text_columns)

    def encode(rows):
        return tokenizer(*[rows[c] for c in columns], truncation=True, max_length=max_length)

    keep = [c for c in dataset.column_names if c == "label"]
    return dataset.map(encode, batched=True, remove_columns=[c for c in dataset.column_names if c not in keep])


def _split(task: str, split: str, data_dir: Optional[str], max_examples: Optional[int], extra: dict):
    from ..data import load_task

    spec, splits = load_task(task, data_dir=data_dir, **extra)
    dataset = splits[split]
    if max_examples is not None:
        dataset = dataset.select(range(min(max_examples, dataset.num_rows)))
    return spec, dataset


# ---- evaluation ----------------------------------------------------------------------------------------------------


def evaluate(model, tokenizer, *, task: str, output_dir, split: str = "test", samples: int = 20, mode: str = "loop",
             stochastic_layers: Optional[int] = None, spec: Any = None, ood_task: Optional[str] = None,
             data_dir: Optional[str] = None, max_length: int = 128, batch_size: int = 32,
             max_examples: Optional[int] = None, max_batch: Optional[int] = None, n_bins: int = 15, seed: int = 0,
             accelerator: Any = None, task_options: Optional[dict] = None) -> dict:
    """MC-dropout evaluation of ``model`` on ``task``'s ``split``; writes ``mc_eval.json`` and ``reliability.png``
    into ``output_dir`` (main process only) and returns the result dict. ``task_options`` go to ``load_task``
    (``text_columns``, ``label_column`` for local files)."""
    from ..calibration import ood_auroc, reliability_bins, reliability_diagram
    from ..mc import mc_predict
    from ..rundir import write_json

    task_spec, dataset = _split(task, split, data_dir, max_examples, task_options or {})
    encoded = _tokenized(dataset, tokenizer, task_spec.text_columns, max_length)
    options = dict(samples=samples, mode=mode, stochastic_layers=stochastic_layers, spec=spec, max_batch=max_batch,
                   batch_size=batch_size, tokenizer=tokenizer, accelerator=accelerator, seed=seed)
    prediction = mc_predict(model, encoded, **options)
    result = {"task": task_spec.name, "split": split, **prediction.to_dict(n_bins)}
    main = accelerator is None or accelerator.is_main_process
    output_dir = Path(output_dir)
    if prediction.task == "classification" and prediction.labels is not None:
        result["reliability"] = {
            "mc": reliability_bins(prediction.mean_probs, prediction.labels, n_bins).to_dict(),
            "deterministic": reliability_bins(prediction.deterministic_probs, prediction.labels, n_bins).to_dict()}
        if main:
            reliability_diagram(prediction.mean_probs, prediction.labels, output_dir / "reliability.png",
                                title=f"MC dropout ({mode}, T={samples})", other=prediction.deterministic_probs,
                                other_title="deterministic", n_bins=n_bins)
    if ood_task is not None:
        if prediction.task != "classification":
            raise ValueError("--ood-task: OOD AUROC needs a classification task")
        ood_spec, ood_data = _split(ood_task, split, None, max_examples, {})
        ood = mc_predict(model, _tokenized(ood_data, tokenizer, ood_spec.text_columns, max_length), **options)
        auroc = {name: ood_auroc(prediction.scores(name), ood.scores(name)) for name in OOD_SCORES}
        auroc["deterministic_entropy"] = ood_auroc(_entropy(prediction.deterministic_probs),
                                                   _entropy(ood.deterministic_probs))
        result["ood"] = {"task": ood_spec.name, "n": len(ood), "auroc": auroc,
                         "mean_mutual_information": float(ood.mutual_information.mean())}
    if main:
        write_json(output_dir / "mc_eval.json", result)
    return result


def _entropy(probs):
    import numpy as np

    return -(probs * np.log(np.clip(probs, 1e-300, None))).sum(1)


def format_table(result: dict) -> str:
    """The deterministic and MC metrics side by side, as a markdown table."""
    mc_name = f"MC ({result['mode']}, T={result['samples']}" + (
        f", top {result['stochastic_layers']} layers)" if result.get("stochastic_layers") else ")")
    lines = [f"| {result['task']} {result['split']} (n={result['n']}) | deterministic | {mc_name} |", "|---|---:|---:|"]
    det, mc = result.get("deterministic", {}), result.get("mc", {})
    names = {"accuracy": "accuracy", "nll": "NLL", "brier": "Brier", "ece": "ECE", "mce": "MCE",
             "adaptive_ece": "adaptive ECE", "mse": "MSE"}
    for key, label in names.items():
        if key in mc:
            lines.append(f"| {label} | {det.get(key, float('nan')):.4f} | {mc[key]:.4f} |")
    for key, label in (("mean_mutual_information", "mean MI"), ("mean_predictive_entropy", "mean predictive entropy"),
                       ("mean_variance", "mean variance")):
        if key in result:
            lines.append(f"| {label} |  | {result[key]:.4f} |")
    if "ood" in result:
        ood = result["ood"]
        lines.append(f"| OOD AUROC vs {ood['task']}, MI |  | {ood['auroc']['mutual_information']:.4f} |")
        lines.append(f"| OOD AUROC, predictive entropy | {ood['auroc']['deterministic_entropy']:.4f} | "
                     f"{ood['auroc']['predictive_entropy']:.4f} |")
    return "\n".join(lines)


def run(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from ..loading import load_model, resolve_model_path

    if args.samples < 1:
        raise ValueError(f"--samples: expected a positive integer, got {args.samples}")
    model_path, run_dir, recipe_data = resolve_model(args.model)
    task = args.task or recipe_data.get("task")
    if not task:
        raise ValueError("--task: required (no run directory recipe to take data.task from)")
    from ..data import get_task

    if not Path(str(task)).expanduser().exists():
        get_task(task)  # an unknown name fails here, before the slow model load
    max_length = args.max_length or int(recipe_data.get("max_length") or 128)
    task_options = {k: recipe_data[k] for k in ("text_columns", "label_column") if recipe_data.get(k)}
    if task_options and task != recipe_data.get("task"):
        task_options = {}
    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched with several processes
        from accelerate import Accelerator

        accelerator = Accelerator()
    device = accelerator.device if accelerator else torch.device(
        args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    kwargs = {}
    if run_dir is None and not Path(model_path).is_dir():
        try:  # a bare model name gets a head sized for the task
            kwargs["num_labels"] = get_task(task).num_labels
        except ValueError:
            pass
    model = load_model(model_path, **kwargs).to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_path if Path(model_path).is_dir() else
                                              resolve_model_path(model_path))
    output = Path(args.output) if args.output else (run_dir if run_dir is not None else Path("mc_eval"))
    result = evaluate(model, tokenizer, task=task, output_dir=output, split=args.split, samples=args.samples,
                      mode=args.mode, stochastic_layers=args.stochastic_layers, spec=args.spec,
                      ood_task=args.ood_task, data_dir=args.data_dir or recipe_data.get("data_dir"),
                      max_length=max_length, batch_size=args.batch_size, max_examples=args.max_examples,
                      max_batch=args.max_batch, n_bins=args.bins, seed=args.seed, accelerator=accelerator,
                      task_options=task_options)
    if accelerator is None or accelerator.is_main_process:
        print(format_table(result))
        written = ["mc_eval.json"] + (["reliability.png"] if "reliability" in result else [])
        print(f"\nwrote {', '.join(str(output / name) for name in written)}")
    return 0
