"""Run directories and the prediction passes over them.

A RUN_DIR is reloaded the way ``dropout-tune mc-eval`` reloads it (``evaluation.resolve_model_source``,
``read_run_recipe``, ``recipe_options``, ``loading.load_model``); its data are the recipe's (``data.task``, the
``data.max_eval`` test and validation subsets drawn with the run's seed, ``data.max_train`` for the training split
a Laplace approximation is fitted on). Runs of an ensemble must share one recipe up to ``training.seed`` (and the
``training.output_dir`` it names); all of them are evaluated on the first run's examples.

``deterministic_pass`` is the eval-mode pass (batched by ``mc.inputs``, as ``mc_predict`` batches): logits, labels
and, when asked, the input of the head's final linear layer (what a last-layer Laplace approximation needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

#: Recipe keys that may differ between the members of an ensemble.
SEED_KEYS = ("training.seed", "training.output_dir")


@dataclass
class Run:
    """One run directory: where its model is and the recipe it was trained with."""

    run_dir: Path
    model_path: str
    recipe: Any  # dropout_tune.recipe.Recipe

    @property
    def seed(self) -> int:
        return int(self.recipe.training.seed)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def open_runs(run_dirs: Sequence[str]) -> list[Run]:
    """The runs of ``run_dirs``; a ValueError naming the directory when one is not a run directory with a recipe,
    or naming the first key where two recipes differ other than by seed."""
    from ..evaluation import read_run_recipe, resolve_model_source

    if not run_dirs:
        raise ValueError("RUN_DIR: give at least one run directory")
    runs = []
    for name in run_dirs:
        if not Path(name).expanduser().is_dir():
            raise ValueError(f"RUN_DIR {name}: not a directory")
        model_path, run_dir = resolve_model_source(name)
        if run_dir is None:
            raise ValueError(f"RUN_DIR {name}: not a run directory (no model/config.json)")
        recipe = read_run_recipe(run_dir)
        if recipe is None:
            raise ValueError(f"RUN_DIR {name}: no recipe.yaml (the task and its splits come from it)")
        runs.append(Run(run_dir, model_path, recipe))
    first = _flat(runs[0].recipe.to_dict())
    for run in runs[1:]:
        other = _flat(run.recipe.to_dict())
        for key in sorted(set(first) | set(other)):
            if key not in SEED_KEYS and first.get(key) != other.get(key):
                raise ValueError(f"RUN_DIR {run.run_dir}: its recipe differs from {runs[0].run_dir}'s other than by "
                                 f"seed ({key}: {first.get(key)!r} vs {other.get(key)!r}); an ensemble needs one "
                                 f"recipe run with different seeds")
        if run.seed == runs[0].seed:
            raise ValueError(f"RUN_DIR {run.run_dir}: same recipe and seed ({run.seed}) as {runs[0].run_dir}")
    return runs


def load_splits(run: Run, splits: Sequence[str], task: Optional[str] = None, max_examples: Optional[int] = None):
    """``(task spec, {split: dataset})`` of the run's recipe data (``task`` overrides ``data.task`` for an OOD
    task, which keeps none of the recipe's column options); a ValueError naming the run when a split is missing."""
    from ..data import load_task
    from ..evaluation import recipe_options

    options = recipe_options(run.recipe)
    own = task is None
    name = options["task"] if own else task
    try:
        spec, data = load_task(name, data_dir=options["data_dir"] if own else None,
                               max_train=run.recipe.data.max_train,
                               max_eval=max_examples if max_examples is not None else options["max_examples"],
                               seed=options["data_seed"], **(options["task_options"] if own else {}))
    except ValueError as err:
        raise ValueError(f"RUN_DIR {run.run_dir}: task {name}: {err}") from None
    for split in splits:
        if split not in data or len(data[split]) == 0:
            raise ValueError(f"RUN_DIR {run.run_dir}: task {spec.name!r} has no {split} split"
                             + (" (temperature scaling and the regression noise are fitted on it)"
                                if split == "validation" else ""))
    return spec, {split: data[split] for split in splits}


def load_run_model(run: Run, device: Any):
    """(model on ``device``, tokenizer) of a run, loaded as ``mc-eval`` loads it."""
    from transformers import AutoTokenizer

    from ..loading import load_model

    return load_model(run.model_path).to(device), AutoTokenizer.from_pretrained(run.model_path)


def _head_linear(model: Any, inputs: dict, extra: dict, logits_width: int):
    """The last ``nn.Linear`` called in a forward whose output has ``logits_width`` features: the final layer of
    the classification head."""
    import torch

    called: list[torch.nn.Module] = []
    hooks = [m.register_forward_hook(lambda module, args, out: called.append(module))
             for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == logits_width]
    try:
        model(**inputs, **extra)
    finally:
        for h in hooks:
            h.remove()
    if not called:
        raise ValueError(f"{type(model).__name__}: no linear layer with {logits_width} outputs (the head a "
                         f"last-layer Laplace approximation needs)")
    return called[-1]


def deterministic_pass(model: Any, dataset: Any, tokenizer: Any, batch_size: int = 32, features: bool = False,
                       progress: bool = True, desc: str = "deterministic") -> dict[str, Any]:
    """Eval-mode logits ``(N, C)`` (float64), ``labels`` and with ``features`` the input of the head's final linear
    layer ``(N, H)`` at the row that gives each example's logits (the pooled token of a decoder), plus ``head``
    (that layer). Models are put back in their own train/eval state."""
    import inspect

    import torch
    from tqdm.auto import tqdm

    from ..mc import inputs as mc_inputs
    from ..mc.switch import eval_mode

    base = model
    device = next(base.parameters()).device
    names = mc_inputs.input_names(base)
    use_cache = "use_cache" in inspect.signature(mc_inputs.transformers_model(base).forward).parameters
    extra = {"use_cache": False} if use_cache else {}
    loader = mc_inputs.batches(dataset, base, batch_size, tokenizer, None)
    logits_parts, label_parts, feature_parts = [], [], []
    head, captured = None, []
    hook = None
    bar = tqdm(total=len(dataset), desc=desc, unit="ex", disable=None if progress else True, leave=False)
    try:
        with eval_mode(base), torch.inference_mode():
            for batch in loader:
                inputs, labels = mc_inputs.split_batch(batch, names, device)
                if features and head is None:
                    width = base(**inputs, **extra).logits.shape[-1]
                    head = _head_linear(base, inputs, extra, width)
                    hook = head.register_forward_hook(lambda module, args, out: captured.append((args[0], out)))
                captured.clear()
                logits = base(**inputs, **extra).logits
                if features:
                    x, out = captured[-1]
                    if x.dim() == 3:  # per-token head (decoders): the row whose output is the pooled logits
                        row = (out - logits[:, None, :]).abs().sum(-1).argmin(-1)
                        x = x[torch.arange(len(x), device=x.device), row]
                    feature_parts.append(x.double().cpu())
                logits_parts.append(logits.double().cpu())
                if labels is not None:
                    label_parts.append(labels.cpu())
                bar.update(len(logits))
    finally:
        bar.close()
        if hook is not None:
            hook.remove()
    out: dict[str, Any] = {"logits": torch.cat(logits_parts).numpy(),
                           "labels": torch.cat(label_parts).numpy() if label_parts else None}
    if features:
        out["features"], out["head"] = torch.cat(feature_parts).numpy(), head
    return out


def tokenized(dataset: Any, tokenizer: Any, spec: Any, run: Run):
    """``dataset`` tokenized as the run's recipe tokenizes (``data.max_length``)."""
    from ..encoding import tokenize_task

    return tokenize_task(dataset, tokenizer, spec.text_columns, run.recipe.data.max_length)


def labels_of(dataset: Any) -> np.ndarray:
    return np.asarray(dataset["label"])
