"""Fine-tune a model from a recipe with the HF Trainer and a dropout schedule.

Launch:
    accelerate launch [--config_file recipes/accelerate/X.yaml] -m dropout_tune.train RECIPE.yaml [key=value ...]
    dropout-tune train RECIPE.yaml [key=value ...]

Loss: computed from the logits (``regularization.trainer_loss_function``) and divided by the Trainer's
``num_items_in_batch``, so ``gradient_accumulation_steps`` k with batch b gives the weights and logged loss of
batch k*b (a head's own loss ignores that count while the Trainer then skips its division by k).

Distributed correctness: ``average_tokens_across_devices`` is off, so each rank's loss is the mean over its own
items and DDP averages the ranks; the schedule is a pure function of ``global_step``, so every rank applies the
same rate; dropout masks differ per rank because :class:`PerRankDropoutSeed` re-seeds each rank with
``runtime.rank_seed(seed, rank)`` (distinct for every (seed, rank) pair) once the data loader (whose shuffling
must stay in step across ranks) exists (checked in ``tests/test_distributed.py``); evaluation gathers with
``gather_for_metrics``, which drops the padding duplicates, so every example counts once; only the main process
writes files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from transformers import TrainerCallback

from .callbacks import DropoutScheduleCallback
from .encoding import tokenize_task
from .patching import apply_dropout, current_rates
from .recipe import Recipe
from .regularization import RegularizationConfig, decay_parameter_names, doubled_batch, trainer_loss_function
from .files import atomic_write_text, write_json
from .run_identity import clean_recipe
from .rundir import StepLogCallback, check_run_dir, clear_run, plot_learning_curve
from .runtime import preserved_rng, rank_seed
from .spec import DropoutSpec


@dataclass
class TrainingRun:
    """Everything ``build_trainer`` made, for ``train`` (and for tests that add probes)."""

    recipe: Recipe
    trainer: Any
    task: Any
    datasets: Any
    tokenizer: Any
    run_dir: Path
    step_log: StepLogCallback


class PerRankDropoutSeed(TrainerCallback):
    """Give every rank its own dropout masks: the Trainer seeds all ranks alike, which under DDP would draw the same
    masks on every rank. Each rank is re-seeded with ``runtime.rank_seed(seed, rank)``, distinct for every
    (seed, rank) pair. Runs at train begin, after the (rank-synchronised) sampler has captured its seed; on resume
    the Trainer restores each rank's saved RNG state afterwards, so resumed runs stay exact."""

    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size > 1:
            seed_all(rank_seed(args.seed, args.process_index))


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's (``seed mod 2**32``, its limit) and torch's generators on every device."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # all devices: CPU, CUDA, MPS, XPU


def _trainer_class():
    from transformers import Trainer

    class DropoutTrainer(Trainer):
        """The HF Trainer with the recipe's decay rule (optionally no decay on embeddings), the loss computed from
        logits by ``compute_loss_func`` (:func:`~dropout_tune.regularization.trainer_loss_function`: normalised
        by ``num_items_in_batch``, so gradient accumulation is exact), optional R-Drop, and evaluations that leave
        the training's random streams alone (training with or without them gives bit-identical weights)."""

        def __init__(self, *args, regularization=None, **kwargs):
            self.regularization = regularization or RegularizationConfig()
            kwargs.setdefault("compute_loss_func", trainer_loss_function(
                kwargs["model"], kwargs["args"].label_smoothing_factor, self.regularization.rdrop_alpha))
            super().__init__(*args, **kwargs)

        def evaluate(self, *args, **kwargs):
            # an evaluation draws from the random streams (its data loader's seed); mid-training that would shift
            # every later dropout mask, so a trial evaluated every k steps would train other weights than its recipe
            with preserved_rng():
                return super().evaluate(*args, **kwargs)

        def get_decay_parameter_names(self, model):
            return decay_parameter_names(model, exclude_embeddings=self.regularization.exclude_embeddings_from_decay)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.regularization.rdrop_alpha > 0 and model.training and "labels" in inputs:
                inputs = doubled_batch(inputs)  # R-Drop's two passes in one forward (one DDP forward per backward)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return DropoutTrainer


def _build_model(recipe: Recipe, task, model_path: str):
    from .loading import deferred_injection, load_model

    spec = recipe.dropout.parsed_spec()
    labels = {"num_labels": task.num_labels, "problem_type": task.problem_type}
    if not task.is_regression:
        labels.update(id2label=task.id2label, label2id={v: k for k, v in task.id2label.items()})
    base_spec = DropoutSpec(**{role: p for role, p in spec.items() if role != "lora"})
    lora = recipe.model.lora
    # ignore_mismatched_sizes: a checkpoint's head may have another label count; it is re-initialised (and
    # transformers' load report says so), as in the HF run_glue example. With LoRA, injected sites come after the
    # adapters wrap the modules they hook onto (down_proj, embed_tokens): injected before, they would drop the base
    # layer's input only and the adapter's branch would see none of it (a schedule injects after wrapping too).
    model = load_model(model_path, dropout=base_spec, attn_implementation=recipe.model.attn_implementation,
                       ignore_mismatched_sizes=True, inject=lora is None, **labels)
    if lora is not None:
        from peft import LoraConfig, TaskType, get_peft_model

        deferred = deferred_injection(model, base_spec)
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.r, lora_alpha=lora.alpha,
                                                 lora_dropout=lora.dropout, target_modules=list(lora.target_modules)))
        late = DropoutSpec(**dict(deferred.items()), lora=spec.lora)
        if late:
            apply_dropout(model, late, warn_missing=False)
    return model


def _counting(compute_metrics):
    """Adds ``n_examples``: how many predictions reached the metric (each example exactly once under DDP)."""

    def wrapped(eval_prediction):
        metrics = compute_metrics(eval_prediction)
        metrics["n_examples"] = int(len(eval_prediction.label_ids))
        return metrics

    return wrapped


def build_trainer(recipe: Recipe, extra_callbacks: Sequence[Any] = ()) -> TrainingRun:
    """Data, tokenizer, model, TrainingArguments and Trainer for ``recipe`` (nothing trained yet)."""
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    from .data import load_task
    from .loading import load_tokenizer, resolve_model_path
    from .metrics import make_compute_metrics

    model_path = resolve_model_path(recipe.model.name)  # first: a model that cannot be had fails in a second
    set_seed(recipe.training.seed)
    run_dir = recipe.output_dir
    d = recipe.data
    task, splits = load_task(d.task, data_dir=d.data_dir, text_columns=d.text_columns, label_column=d.label_column,
                             max_train=d.max_train, max_eval=d.max_eval, seed=recipe.training.seed)
    if task.is_regression and recipe.regularization.label_smoothing > 0:
        raise ValueError(f"regularization.label_smoothing: task {task.name!r} is a regression; smoothing needs classes")
    tokenizer = load_tokenizer(model_path)
    tokenized = tokenize_task(splits, tokenizer, task.text_columns, recipe.data.max_length)
    model = _build_model(recipe, task, model_path)

    t = recipe.training
    # checkpoints (for resume) follow the evaluation cadence, or come every epoch when there is none
    save = "no" if not t.save_checkpoints else (t.eval_strategy if t.eval_strategy != "no" else "epoch")
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=recipe.optim.learning_rate,
        optim=recipe.optim.optimizer,
        lr_scheduler_type=recipe.optim.lr_scheduler,
        warmup_steps=recipe.optim.warmup_ratio,  # < 1: a fraction of the training steps
        max_grad_norm=recipe.optim.max_grad_norm,
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=save,
        save_steps=t.eval_steps or 500,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        seed=t.seed,
        bf16=t.bf16,
        torch_compile=t.torch_compile,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        # Off: each rank divides by its own item count (no extra all-reduce per step); DDP averages the ranks.
        average_tokens_across_devices=False,
        **recipe.regularization.trainer_kwargs(),
    )
    step_log = StepLogCallback(run_dir / "steps.jsonl")
    callbacks: list[Any] = [PerRankDropoutSeed()]
    schedule = recipe.dropout.parsed_schedule()
    if schedule is not None:
        callbacks.append(DropoutScheduleCallback(schedule))  # before the step log, which reads its rates
    callbacks += [step_log, *extra_callbacks]
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_counting(make_compute_metrics(task)),
        callbacks=callbacks,
        regularization=recipe.regularization,
    )
    return TrainingRun(recipe, trainer, task, tokenized, tokenizer, run_dir, step_log)


def train(recipe: Recipe, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run ``recipe`` end to end; returns the metrics written to ``metrics.json`` (on every rank).

    The output directory is checked first (writable; holding no other run unless ``training.overwrite``, which
    replaces that run, or ``training.resume_from_checkpoint`` inside it, which continues it)."""
    start = time.time()
    t = recipe.training
    replace_old_run = check_run_dir(recipe.output_dir, t.overwrite, t.resume_from_checkpoint)
    run = build_trainer(recipe, extra_callbacks)
    trainer = run.trainer
    main = trainer.is_world_process_zero()
    trainer.accelerator.wait_for_everyone()  # every rank has checked the directory before rank 0 changes it
    if main:
        if replace_old_run:
            clear_run(run.run_dir)
        atomic_write_text(run.run_dir / "recipe.yaml", clean_recipe(recipe).to_yaml())
    result = trainer.train(resume_from_checkpoint=recipe.training.resume_from_checkpoint)
    validation = trainer.evaluate(run.datasets["validation"], metric_key_prefix="validation")
    test = trainer.evaluate(run.datasets["test"], metric_key_prefix="test")
    metrics = {
        "recipe": recipe.name,
        "task": run.task.name,
        "main_metric": run.task.main_metric,
        "model": recipe.model.name,
        "seed": recipe.training.seed,
        "world_size": trainer.args.world_size,
        "train": {"loss": result.training_loss, "steps": result.global_step,
                  "runtime_s": result.metrics.get("train_runtime"),
                  "examples": len(run.datasets["train"])},
        "validation": _strip(validation, "validation_"),
        "test": _strip(test, "test_"),
        "final_dropout": current_rates(trainer.model),
        "dropout_schedule": recipe.dropout.parsed_schedule().to_dict() if recipe.dropout.schedule is not None
        else None,
        "wall_time_s": round(time.time() - start, 1),
    }
    if main:
        _save_model(trainer, run.run_dir / "model")
    if recipe.mc_eval.enabled:
        trainer.accelerator.wait_for_everyone()  # the saved model is complete before any rank reads it
        metrics["mc_eval"] = _mc_eval(run)
    if main:
        write_json(run.run_dir / "metrics.json", metrics)
        plot_learning_curve(trainer.state.log_history, run.step_log.rows, run.run_dir / "learning_curve.png",
                            title=f"{recipe.name}: {run.task.name}")
    trainer.accelerator.wait_for_everyone()
    return metrics


def _mc_eval(run: TrainingRun) -> dict:
    """MC-dropout evaluation of the saved model on the test split (``mc_eval.json``, ``reliability.png``); the
    summary goes into metrics.json. Every rank takes part; gathering counts each example once.

    It evaluates the model as saved in ``model/`` (LoRA adapters merged, injected sites re-added from the config),
    read back like ``dropout-tune mc-eval RUN_DIR`` reads it, so both sample the same sites at the same rates."""
    from .evaluation import evaluate_run
    from .loading import load_model

    accelerator = run.trainer.accelerator
    model = load_model(str(run.run_dir / "model")).to(accelerator.device)
    result = evaluate_run(model, run.tokenizer, run.recipe, run.run_dir, accelerator=accelerator)
    return {k: v for k, v in result.items() if k != "reliability"}  # the bins stay in mc_eval.json


def _save_model(trainer, directory: Path) -> None:
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # PEFT: save a merged, standalone model (adapters folded in)
        model = model.merge_and_unload()
    model.save_pretrained(directory, safe_serialization=True)
    trainer.processing_class.save_pretrained(directory)


def _strip(metrics: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in metrics.items()}


def summary_table(metrics: dict) -> str:
    """One-run summary for the console."""
    main = metrics["main_metric"]
    rows = [("validation", metrics["validation"]), ("test", metrics["test"])]
    lines = [f"{metrics['recipe']} on {metrics['task']} (seed {metrics['seed']}, {metrics['world_size']} process(es), "
             f"{metrics['wall_time_s']} s)", f"| split | {main} | loss | examples |", "|---|---|---|---|"]
    for split, m in rows:
        lines.append(f"| {split} | {m.get(main, float('nan')):.4f} | {m.get('loss', float('nan')):.4f} | "
                     f"{m.get('n_examples', '?')} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m dropout_tune.train RECIPE.yaml [key=value ...]`` (what ``accelerate launch -m`` runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="dropout_tune.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe YAML file, or a shipped recipe's name (e.g. rotten_tomatoes)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. training.epochs=2 data.max_train=500")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in the output directory (same as training.overwrite=true)")
    args = parser.parse_intermixed_args(argv)
    return run_cli(args.recipe, args.overrides, overwrite=args.overwrite)


def run_cli(recipe_path: str, overrides: list[str], overwrite: bool = False) -> int:
    """Train from a recipe file (or a shipped recipe's name) and print the summary; bad input is one line on stderr and exit code 2."""
    from .recipe_catalog import resolve_recipe
    from .runtime import is_main_process

    try:
        recipe = Recipe.from_yaml(resolve_recipe(recipe_path), [*overrides, *(["training.overwrite=true"] if overwrite else [])])
        metrics = train(recipe)
    except (ValueError, FileNotFoundError) as err:
        print(f"dropout-tune train: error: {err}", file=sys.stderr)
        return 2
    if is_main_process():
        print(summary_table(metrics))
        print(f"run directory: {recipe.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
