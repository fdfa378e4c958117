"""A real 2-process (gloo, CPU) launch of the training entry point on a tiny model."""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from dropout_tune.recipe_catalog import packaged_recipe
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task

ROOT = Path(__file__).resolve().parents[1]
N_TEST = 21  # odd on purpose: the last evaluation batch is padded with duplicates across the 2 ranks


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, free_port, run_process):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("accelerate's launcher is not installed next to this Python")
    tmp = tmp_path_factory.mktemp("ddp")
    save_tiny_text_model(tmp / "model")
    write_toy_text_task(tmp / "data", sizes=(64, 24, N_TEST))
    recipe = {
        "name": "ddp",
        "model": {"name": str(tmp / "model"), "attn_implementation": "eager"},
        "data": {"task": str(tmp / "data"), "max_length": 16},
        "dropout": {"schedule": {"hidden": {"shape": "linear", "start": 0.3, "end": 0.0}, "attention": 0.2}},
        "training": {"epochs": 1, "batch_size": 8, "eval_batch_size": 4, "logging_steps": 1,
                     "eval_strategy": "no", "output_dir": str(tmp / "run")},
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    launcher = Path(sys.executable).parent / "accelerate"
    # a free port, not a fixed one: another 2-process job on this machine must not collide with this one
    run_process([launcher, "launch", "--config_file", packaged_recipe("accelerate/cpu_2proc"),
                 "--main_process_port", free_port(), ROOT / "tests/distributed_probe.py", tmp / "recipe.yaml", tmp],
                env=env, timeout=600, cwd=tmp)
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp, ranks


@pytest.mark.distributed
def test_two_processes_ran(two_process_run):
    _, ranks = two_process_run
    assert [r["metrics"]["world_size"] for r in ranks] == [2, 2]
    # 64 train examples, 8 per rank per step, 2 ranks: 4 optimizer steps
    assert [len(r["steps"]) for r in ranks] == [4, 4]


@pytest.mark.distributed
def test_ranks_draw_different_masks(two_process_run):
    _, (rank0, rank1) = two_process_run
    for s0, s1 in zip(rank0["steps"], rank1["steps"]):
        assert s0["mask"] != s1["mask"], f"step {s0['step']}: both ranks would draw the same dropout mask"


@pytest.mark.distributed
def test_all_ranks_apply_the_same_rate_every_step(two_process_run):
    _, (rank0, rank1) = two_process_run
    assert [s["rates"] for s in rank0["steps"]] == [s["rates"] for s in rank1["steps"]]
    hidden = [s["rates"]["hidden"] for s in rank0["steps"]]
    assert hidden == pytest.approx([0.3 * (1 - k / 4) for k in range(4)])  # linear 0.3 -> 0 over 4 steps
    assert all(s["rates"]["attention"] == 0.2 for s in rank0["steps"])


@pytest.mark.distributed
def test_evaluation_counts_every_example_once(two_process_run):
    _, ranks = two_process_run
    for r in ranks:
        assert r["metrics"]["test"]["n_examples"] == N_TEST
        assert r["metrics"]["validation"]["n_examples"] == 24


@pytest.mark.distributed
def test_only_rank_zero_writes(two_process_run):
    tmp, (rank0, rank1) = two_process_run
    assert rank1["writes"] == []
    written = {Path(w.split(":", 1)[1]).name for w in rank0["writes"]}
    assert {"recipe.yaml", "metrics.json", "steps.jsonl", "model"} <= written, written
    for name in ("metrics.json", "steps.jsonl", "recipe.yaml", "learning_curve.png", "model/model.safetensors"):
        assert (tmp / "run" / name).is_file(), name


@pytest.mark.distributed
def test_loss_is_not_multiplied_by_world_size(two_process_run):
    """Random-init 2-class head: the first loss is about ln 2. The Trainer's default
    average_tokens_across_devices=True doubles it under 2-process DDP; ours must not."""
    tmp, (rank0, _) = two_process_run
    steps = [json.loads(line) for line in (tmp / "run" / "steps.jsonl").read_text().splitlines()]
    first = steps[0]["loss"]
    assert abs(first - math.log(2)) < 0.05, first
    assert abs(rank0["doubled_first_loss"] - 2 * math.log(2)) < 0.1, "the check would not catch the doubling"
