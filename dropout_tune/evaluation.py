"""MC-dropout evaluation of a model on a task: calibration, uncertainty, reliability diagram, OOD AUROC.

``evaluate`` writes ``mc_eval.json`` (the deterministic and the MC metrics side by side, the rates sampled,
uncertainty summaries, reliability bins, OOD AUROC) and ``reliability.png``. A training run and ``dropout-tune
mc-eval`` both call it with the options a recipe gives (``recipe_options``), so on the same run both sample at the
same rates (``sampling_spec``): the explicit ``mc_eval.spec`` / ``--spec`` when given, else the recipe's nominal rate
of each role -- the peak of its schedule when the recipe schedules it, else the rate of ``dropout.spec``, else the
rate the model was loaded with -- and, for a model without a recipe, every site at its own (config) rate.

Example:
    >>> from dropout_tune.testing import tiny_model
    >>> from dropout_tune.recipe import DropoutSection
    >>> model = tiny_model("bert")
    >>> sampling_spec(model, dropout=DropoutSection(schedule="hidden=off_after:0.3:at=0.5"))
    DropoutSpec(embedding=0.1, attention=0.1, hidden=0.3, classifier=0.1)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .files import write_json
from .loading import resolve_model_path
from .patching import SpecLike, current_rates
from .runtime import is_main_process
from .spec import DropoutSpec

if TYPE_CHECKING:  # pragma: no cover
    from .recipe import DropoutSection, Recipe

OOD_SCORES = ("mutual_information", "predictive_entropy", "variation_ratio")
RESULT_FILE = "mc_eval.json"
DIAGRAM_FILE = "reliability.png"


# ---- what to evaluate, and at which rates ----------------------------------------------------------------------------


def resolve_model_source(name_or_path: str) -> tuple[str, Optional[Path]]:
    """(model directory or hub id, run directory or None) of a run directory (with ``model/``), a saved model
    directory, ``minilm`` or a hub id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "model" / "config.json").is_file():
        return str(path / "model"), path
    if path.is_dir() and (path / "config.json").is_file():
        return str(path), None
    if path.exists():
        raise FileNotFoundError(f"{name_or_path!r} is neither a run directory (with model/config.json) nor a model "
                                f"directory (with config.json)")
    return resolve_model_path(name_or_path), None


def read_run_recipe(run_dir: Path) -> Optional["Recipe"]:
    """The recipe a run directory was trained with (its ``recipe.yaml``), or None when it has none."""
    from .recipe import Recipe

    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        return None
    try:
        return Recipe.from_yaml(path)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def nominal_rates(model: Any, dropout: "DropoutSection") -> DropoutSpec:
    """The rate each role of ``model`` is trained at by a recipe's ``dropout`` section: the peak of the role's
    schedule, else its rate in ``dropout.spec``, else its rate in the model as loaded (a schedule changes only the
    roles it names). A role the recipe names that the model has no site for but its family injects (a decoder's
    ``hidden``) counts too: training injected it, and a reloaded model, whose saved config records only rates
    above 0, must sample it as the run's own evaluation did.

    >>> from dropout_tune.testing import tiny_model
    >>> from dropout_tune.recipe import DropoutSection
    >>> nominal_rates(tiny_model("llama"), DropoutSection(schedule="hidden=early:0.1:until=0.3"))
    DropoutSpec(attention=0.0, hidden=0.1)
    """
    from .injection import injectable_roles

    rates = current_rates(model)
    possible = set(rates) | set(injectable_roles(model))
    for role, p in dropout.parsed_spec().items():
        if role in possible:
            rates[role] = p
    schedule = dropout.parsed_schedule()
    for role, shape in (schedule.items() if schedule is not None else ()):
        if role in possible:
            rates[role] = shape.max_rate
    return DropoutSpec(**rates)


def sampling_spec(model: Any, spec: SpecLike = None, dropout: Optional["DropoutSection"] = None
                  ) -> Optional[DropoutSpec]:
    """The rates MC dropout samples at: ``spec`` when given (only its roles are stochastic), else the nominal rates
    of the recipe's ``dropout`` section (see ``nominal_rates``), else None (every site at its current rate)."""
    if spec is not None:
        return DropoutSpec.coerce(spec)
    if dropout is not None:
        return nominal_rates(model, dropout)
    return None


def recipe_options(recipe: "Recipe") -> dict[str, Any]:
    """``evaluate`` keyword arguments from a recipe: its task and data limits (the same test examples as the run's
    own test metrics: ``data.max_eval`` drawn with the training seed) and its ``mc_eval`` and ``dropout`` sections."""
    d, m = recipe.data, recipe.mc_eval
    task_options = {k: v for k, v in (("text_columns", d.text_columns), ("label_column", d.label_column)) if v}
    return dict(task=d.task, data_dir=d.data_dir, max_length=d.max_length, max_examples=d.max_eval,
                data_seed=recipe.training.seed, task_options=task_options, samples=m.samples, mode=m.mode,
                stochastic_layers=m.stochastic_layers, spec=m.spec, dropout=recipe.dropout)


def pick_device(name: Optional[str]) -> Any:
    """``torch.device`` for ``name`` (default: cuda when available, else cpu); a ValueError for a device that does
    not exist here."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: only {count} CUDA device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine (use --device cpu)")
    return device


# ---- evaluation ------------------------------------------------------------------------------------------------------


def _load_split(task: str, split: str, data_dir: Optional[str], max_examples: Optional[int], seed: int,
                options: dict):
    from .data import load_task

    limit = {"max_train" if split == "train" else "max_eval": max_examples}
    spec, splits = load_task(task, data_dir=data_dir, seed=seed, **limit, **options)
    return spec, splits[split]


def evaluate(model, tokenizer, *, task: str, output_dir, split: str = "test", samples: int = 20, mode: str = "loop",
             stochastic_layers: Optional[int] = None, spec: SpecLike = None,
             dropout: Optional["DropoutSection"] = None, ood_task: Optional[str] = None,
             data_dir: Optional[str] = None, max_length: int = 128, batch_size: int = 32,
             max_examples: Optional[int] = None, data_seed: int = 42, max_batch: Optional[int] = None,
             n_bins: int = 15, seed: int = 0, accelerator: Any = None, task_options: Optional[dict] = None,
             progress: bool = False) -> dict:
    """MC-dropout evaluation of ``model`` on ``task``'s ``split``; writes ``mc_eval.json`` and ``reliability.png``
    into ``output_dir`` (main process only) and returns the result dict.

    The rates sampled come from ``sampling_spec(model, spec, dropout)`` and are recorded under ``rates``.
    ``max_examples`` keeps a ``data_seed``-chosen subset (as a recipe's ``data.max_eval``); ``task_options`` go to
    ``load_task`` (``text_columns``, ``label_column`` for local files); ``progress`` shows a bar over the passes.
    """
    from .calibration import ood_auroc, reliability_bins, reliability_diagram
    from .encoding import tokenize_task
    from .mc import mc_predict

    task_spec, dataset = _load_split(task, split, data_dir, max_examples, data_seed, task_options or {})
    encoded = tokenize_task(dataset, tokenizer, task_spec.text_columns, max_length)
    options = dict(samples=samples, mode=mode, stochastic_layers=stochastic_layers,
                   spec=sampling_spec(model, spec, dropout), max_batch=max_batch, batch_size=batch_size,
                   tokenizer=tokenizer, accelerator=accelerator, seed=seed, progress=progress)
    prediction = mc_predict(model, encoded, **options)
    result = {"task": task_spec.name, "split": split, **prediction.to_dict(n_bins)}
    main = is_main_process()
    output_dir = Path(output_dir)
    if prediction.task == "classification" and prediction.labels is not None:
        result["reliability"] = {
            "mc": reliability_bins(prediction.mean_probs, prediction.labels, n_bins).to_dict(),
            "deterministic": reliability_bins(prediction.deterministic_probs, prediction.labels, n_bins).to_dict()}
        if main:
            reliability_diagram(prediction.mean_probs, prediction.labels, output_dir / DIAGRAM_FILE,
                                title=f"MC dropout ({mode}, T={samples})", other=prediction.deterministic_probs,
                                other_title="deterministic", n_bins=n_bins)
    if ood_task is not None:
        if prediction.task != "classification":
            raise ValueError("ood_task: OOD AUROC needs a classification task")
        ood_spec, ood_data = _load_split(ood_task, split, None, max_examples, data_seed, {})
        ood = mc_predict(model, tokenize_task(ood_data, tokenizer, ood_spec.text_columns, max_length), **options)
        auroc = {name: ood_auroc(prediction.scores(name), ood.scores(name))
                 for name in OOD_SCORES + ("deterministic_entropy",)}
        result["ood"] = {"task": ood_spec.name, "n": len(ood), "auroc": auroc,
                         "mean_mutual_information": float(ood.mutual_information.mean())}
    if main:
        write_json(output_dir / RESULT_FILE, result)
    return result


def evaluate_run(model, tokenizer, recipe: "Recipe", output_dir, accelerator: Any = None) -> dict:
    """``evaluate`` with the options of ``recipe`` (``recipe_options``): what a training run does at its end."""
    return evaluate(model, tokenizer, output_dir=output_dir, accelerator=accelerator, **recipe_options(recipe))


def format_table(result: dict) -> str:
    """The deterministic and MC metrics side by side, as a markdown table, and the rates sampled."""
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
    rates = result.get("rates") or {}
    lines.append("\nrates sampled: " + (", ".join(f"{role}={p:g}" for role, p in rates.items()) or "none"))
    return "\n".join(lines)
