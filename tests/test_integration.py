"""The real thing, small: MiniLM (embedded weights) fine-tuned on Rotten Tomatoes (embedded data)."""

import pytest

from dropout_tune.data import load_task
from dropout_tune.recipe import Recipe
from dropout_tune.rundir import read_jsonl
from dropout_tune.train import train


@pytest.mark.integration
def test_minilm_learns_rotten_tomatoes_with_a_schedule(tmp_path):
    recipe = Recipe.from_dict({
        "name": "rt-small",
        "data": {"task": "rotten_tomatoes", "max_train": 800, "max_eval": 400, "max_length": 48},
        "dropout": {"schedule": "all=off_after:0.1:at=0.5"},
        "optim": {"learning_rate": 1e-4},
        "training": {"epochs": 1, "batch_size": 16, "eval_strategy": "no", "output_dir": str(tmp_path / "run")},
    })
    metrics = train(recipe)
    _, splits = load_task("rotten_tomatoes", max_eval=400)
    labels = splits["test"]["label"]
    majority = max(labels.count(0), labels.count(1)) / len(labels)
    assert metrics["test"]["n_examples"] == 400
    assert metrics["test"]["accuracy"] > majority + 0.05, (metrics["test"], majority)
    steps = read_jsonl(tmp_path / "run" / "steps.jsonl")
    assert len(steps) == 50
    assert {s["dropout/attention"] for s in steps[:25]} == {0.1} and {s["dropout/hidden"] for s in steps[25:]} == {0.0}
    assert metrics["final_dropout"]["attention"] == 0.0
