"""Run under `accelerate launch` by tests/test_distributed.py: trains a recipe with probes, one JSON per rank.

usage: accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml tests/distributed_probe.py RECIPE OUT_DIR
"""

import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

import dropout_tune.files as files
import dropout_tune.rundir as rundir
import dropout_tune.train as train_module
from dropout_tune.distributed import end_process_group
from dropout_tune.patching import current_rates
from dropout_tune.recipe import Recipe


class Probe(TrainerCallback):
    """Per step: the rates the model really has, and the dropout mask this rank would draw now (the RNG state is
    put back, so training is not perturbed)."""

    def __init__(self):
        self.steps = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        rng = torch.get_rng_state()
        mask = (torch.rand(256) < 0.5).int().tolist()
        torch.set_rng_state(rng)
        self.steps.append({"step": state.global_step, "rates": current_rates(getattr(model, "module", model)),
                           "mask": "".join(map(str, mask))})


def record_writes() -> list:
    """Every file the package writes goes through these functions (those of them that exist): record the path of
    each call this rank makes, as "function:path"."""
    writes: list = []

    def recording(fn, label):
        def wrapper(*args, **kwargs):
            path = next((a for a in args if isinstance(a, (str, os.PathLike))), None)
            writes.append(f"{label}:{path}")
            return fn(*args, **kwargs)

        return wrapper

    for module, name in [(files, "atomic_write_bytes"), (rundir, "atomic_write_text"), (rundir, "write_json"),
                         (train_module, "atomic_write_text"), (train_module, "write_json"),
                         (train_module, "_save_model")]:
        if hasattr(module, name):
            setattr(module, name, recording(getattr(module, name), name))
    return writes


def main() -> None:
    recipe_path, out_dir = sys.argv[1], Path(sys.argv[2])
    writes = record_writes()
    probe = Probe()
    metrics = train_module.train(Recipe.from_yaml(recipe_path), extra_callbacks=[probe])
    rank = int(os.environ.get("RANK", 0))
    result = {"rank": rank, "steps": probe.steps, "metrics": metrics, "writes": writes}

    # Teeth: the same first step with the Trainer's default average_tokens_across_devices=True and the head's own
    # loss (which ignores num_items_in_batch) instead of DropoutTrainer's loss function
    doubled = Recipe.from_yaml(recipe_path, ["training.max_steps=1", f"training.output_dir={out_dir / 'doubled'}"])
    run = train_module.build_trainer(doubled)
    run.trainer.args.average_tokens_across_devices = True
    run.trainer.compute_loss_func = None
    run.trainer.train()
    result["doubled_first_loss"] = next(h["loss"] for h in run.trainer.state.log_history if "loss" in h)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result, default=str))
    end_process_group()  # a gloo group alive at exit can abort the process (see dropout_tune.distributed)


if __name__ == "__main__":  # run by accelerate launch; never on import (pytest imports modules for doctests)
    main()
