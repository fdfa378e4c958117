"""The training entry point on a tiny model: run directory, per-step rates, regularisation, bad input."""

import json
import subprocess
import sys

from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from dropout_tune.recipe import Recipe
from dropout_tune.rundir import read_jsonl
from dropout_tune.schedules import ScheduleSet
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task
from dropout_tune.runtime import rank_seed
from dropout_tune.train import PerRankDropoutSeed, build_trainer, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    save_tiny_text_model(tmp / "model")
    write_toy_text_task(tmp / "data", sizes=(48, 16, 16))
    return tmp


def _recipe(toy, tmp_path, **sections):
    data = {"name": "toy", "model": {"name": str(toy / "model")}, "data": {"task": str(toy / "data"),
                                                                          "max_length": 16},
            "training": {"epochs": 1, "batch_size": 8, "logging_steps": 1, "output_dir": str(tmp_path / "run")}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return Recipe.from_dict(data)


def test_run_directory_and_per_step_rates(toy, tmp_path):
    schedule = "hidden=off_after:0.2:at=0.5,attention=linear:0.3:0.0"
    metrics = train(_recipe(toy, tmp_path, dropout={"schedule": schedule}))
    run = tmp_path / "run"
    for name in ("recipe.yaml", "metrics.json", "steps.jsonl", "learning_curve.png", "model/model.safetensors",
                 "model/config.json", "model/tokenizer.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "metrics.json").read_text())["test"]["n_examples"] == 16
    assert metrics["test"]["n_examples"] == 16 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 7))  # 48 examples / batch 8
    expected = ScheduleSet.parse(schedule)
    for s in steps:
        rates = expected.rates_at(s["step"] - 1, 6)
        assert s["dropout/hidden"] == pytest.approx(rates["hidden"])
        assert s["dropout/attention"] == pytest.approx(rates["attention"])
        assert "learning_rate" in s
    assert "loss" in steps[0]
    # the saved model keeps the rates it was built with: a schedule is training-time behaviour
    saved = json.loads((run / "model/config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.1


def test_regularisation_reaches_the_trainer(toy, tmp_path):
    run = build_trainer(_recipe(toy, tmp_path, regularization={"label_smoothing": 0.1, "weight_decay": 0.05,
                                                               "exclude_embeddings_from_decay": True}))
    trainer = run.trainer
    assert trainer.args.label_smoothing_factor == 0.1 and trainer.args.weight_decay == 0.05
    assert trainer.args.average_tokens_across_devices is False
    decayed = trainer.get_decay_parameter_names(trainer.model)
    assert "bert.embeddings.word_embeddings.weight" not in decayed
    assert "classifier.weight" in decayed and "classifier.bias" not in decayed
    assert not any("LayerNorm" in name for name in decayed)


def test_label_smoothing_on_regression_is_refused(toy, tmp_path):
    path = tmp_path / "reg.csv"
    path.write_text("text,label\n" + "".join(f"a b c {i},{i / 10}\n" for i in range(20)))
    recipe = _recipe(toy, tmp_path, data={"task": str(path)}, regularization={"label_smoothing": 0.1})
    with pytest.raises(ValueError, match="regression"):
        build_trainer(recipe)


@pytest.mark.parametrize("args,needle", [
    (["recipes/rotten_tomatoes.yaml", "training.epochs=zero"], "training.epochs: expected a number"),
    (["recipes/rotten_tomatoes.yaml", "dropout.schedule=hidden=late:0.1:start=2"], "hidden.start"),
    (["recipes/nope.yaml"], "does not exist"),
    (["recipes/rotten_tomatoes.yaml", "data.task=no_such_task"], "no_such_task"),
])
def test_train_cli_bad_input(args, needle):
    result = subprocess.run([sys.executable, "-m", "dropout_tune.cli", "train", *args], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr[-2000:]


def test_mc_eval_at_the_end_of_training(toy, tmp_path):
    metrics = train(_recipe(toy, tmp_path, mc_eval={"enabled": True, "samples": 3},
                            dropout={"schedule": "all=0.1"}))
    run = tmp_path / "run"
    assert (run / "mc_eval.json").is_file() and (run / "reliability.png").is_file()
    mc = metrics["mc_eval"]
    assert mc["samples"] == 3 and mc["n"] == 16
    assert set(mc["mc"]) >= {"accuracy", "nll", "brier", "ece"} and "deterministic" in mc
    assert json.loads((run / "metrics.json").read_text())["mc_eval"]["n"] == 16


def test_lora_recipe_schedules_the_lora_role(toy, tmp_path):
    recipe = _recipe(toy, tmp_path, model={"lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
                     dropout={"schedule": {"lora": {"shape": "linear", "start": 0.2, "end": 0.0}}})
    train(recipe)
    steps = read_jsonl(tmp_path / "run" / "steps.jsonl")
    assert [s["dropout/lora"] for s in steps] == pytest.approx([0.2 * (1 - k / 6) for k in range(6)])
    # adapters merged into a standalone model: no peft modules left in the saved weights
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "model" / "model.safetensors"), "pt") as f:
        assert not any("lora" in key for key in f.keys())


def test_per_rank_seeds_differ_for_every_seed_and_rank():
    seeds = [rank_seed(s, r) for s in range(64) for r in range(16)]
    assert len(set(seeds)) == len(seeds)
    assert rank_seed(7, 1) != rank_seed(8, 0)  # seed + rank gave these the same dropout stream


def test_per_rank_seed_callback_seeds_every_generator_with_rank_seed():
    import random
    from types import SimpleNamespace

    import numpy as np
    import torch

    saved = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            callback = PerRankDropoutSeed()
            torch.manual_seed(1)
            callback.on_train_begin(SimpleNamespace(world_size=1, process_index=0, seed=9), None, None)
            assert torch.initial_seed() == 1  # a single process keeps the Trainer's seeding
            callback.on_train_begin(SimpleNamespace(world_size=4, process_index=3, seed=5000), None, None)
            expected = rank_seed(5000, 3)
            assert expected >= 2**32  # numpy's limit: it gets the seed modulo 2**32
            assert torch.initial_seed() == expected
            draws = random.random(), np.random.rand()
            random.seed(expected)
            np.random.seed(expected % 2**32)
            assert draws == (random.random(), np.random.rand())
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


# ---- the run directory -------------------------------------------------------------------------------------------


def test_a_second_run_into_the_same_directory_is_refused_unless_overwrite(toy, tmp_path):
    train(_recipe(toy, tmp_path, training={"max_steps": 2, "eval_strategy": "no", "save_checkpoints": True,
                                           "eval_steps": 1}))
    run = tmp_path / "run"
    assert (run / "checkpoints").is_dir() and (run / "metrics.json").is_file()
    (run / "checkpoints" / "checkpoint-999").mkdir()  # a stale checkpoint of the old run
    (run / "notes.txt").write_text("mine")  # not a run file: kept
    again = _recipe(toy, tmp_path, training={"max_steps": 2, "eval_strategy": "no"})
    with pytest.raises(ValueError, match=r"already holds a run \(recipe.yaml, metrics.json, model, checkpoints\); "
                                         r"pass --overwrite \(training.overwrite=true\)") as err:
        train(again)
    assert str(run) in str(err.value)
    assert (run / "checkpoints" / "checkpoint-999").is_dir()  # refused before touching anything
    replaced = _recipe(toy, tmp_path, training={"max_steps": 1, "eval_strategy": "no", "overwrite": True})
    metrics = train(replaced)
    assert metrics["train"]["steps"] == 1
    assert not (run / "checkpoints").exists()  # the old run's checkpoints are gone, not mixed with the new model
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 1


def test_train_cli_refuses_an_existing_run_in_one_line_and_overwrite_flag_replaces_it(toy, tmp_path, capsys):
    from dropout_tune.cli import main

    recipe_path = tmp_path / "toy.yaml"
    recipe = _recipe(toy, tmp_path, training={"max_steps": 1, "eval_strategy": "no"})
    recipe_path.write_text(recipe.to_yaml())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    capsys.readouterr()
    assert main(["train", str(recipe_path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(tmp_path / "run") in lines[0] and "--overwrite" in lines[0], lines
    assert main(["train", str(recipe_path), "--overwrite"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["steps"] == 1


def test_resuming_from_a_checkpoint_in_the_run_directory_continues_it(toy, tmp_path):
    training = {"max_steps": 4, "eval_strategy": "steps", "eval_steps": 2, "save_checkpoints": True}
    train(_recipe(toy, tmp_path, training=training))
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir()
    resumed = train(_recipe(toy, tmp_path, training=dict(training, resume_from_checkpoint=str(checkpoint))))
    assert resumed["train"]["steps"] == 4
    with pytest.raises(ValueError, match="training.overwrite would delete the checkpoint to resume from"):
        train(_recipe(toy, tmp_path, training=dict(training, resume_from_checkpoint=str(checkpoint),
                                                   overwrite=True)))


class _Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_an_interrupted_run_leaves_no_metrics_json(toy, tmp_path, monkeypatch):
    import dropout_tune.files as files

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"old": "run"}')
    recipe = _recipe(toy, tmp_path, training={"max_steps": 2, "eval_strategy": "no", "overwrite": True})
    with pytest.raises(KeyboardInterrupt):
        train(recipe, extra_callbacks=[_Interrupt()])
    assert not (run / "metrics.json").exists()  # the replaced run's metrics do not describe the new one
    # interrupted while metrics.json itself is written: there is no file rather than half of one
    real_replace = files.os.replace

    def interrupted_replace(src, dst):
        if Path(dst).name == "metrics.json":
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        train(recipe)
    assert not (run / "metrics.json").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".metrics.json")]  # no temporary left behind


def test_train_into_a_path_that_is_not_a_directory_fails_before_loading(toy, tmp_path, capsys, monkeypatch):
    import dropout_tune.train as train_module
    from dropout_tune.cli import main

    (tmp_path / "file").write_text("x")
    recipe_path = tmp_path / "toy.yaml"
    recipe_path.write_text(_recipe(toy, tmp_path, training={"output_dir": str(tmp_path / "file" / "run")}).to_yaml())
    monkeypatch.setattr(train_module, "build_trainer", lambda *a, **k: pytest.fail("loaded before checking"))
    capsys.readouterr()
    assert main(["train", str(recipe_path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a directory" in lines[0] and str(tmp_path / "file") in lines[0], lines


def test_train_with_an_uncached_hub_id_offline_fails_in_one_line(toy, tmp_path, capsys, monkeypatch):
    from dropout_tune.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe_path = tmp_path / "toy.yaml"
    recipe_path.write_text(_recipe(toy, tmp_path, model={"name": "no-such-org/no-such-model"}).to_yaml())
    capsys.readouterr()
    assert main(["train", str(recipe_path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "'no-such-org/no-such-model'" in lines[0] and "HF_HUB_OFFLINE" in lines[0], lines


def test_learning_curve_plot_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from dropout_tune.rundir import plot_learning_curve

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a user's non-Agg backend
    try:
        history = [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6, "eval_loss": 0.65}]
        steps = [{"step": 1, "dropout/hidden": 0.1}, {"step": 2, "dropout/hidden": 0.0}]
        plot_learning_curve(history, steps, tmp_path / "curve.png", title="t")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
    finally:
        matplotlib.use(before)


def test_evaluating_during_training_does_not_change_the_training(toy, tmp_path):
    """Evaluations must not draw from the training's random streams (dropout masks, data order): a search trial
    (evaluated every few steps) and its best_recipe.yaml (evaluated at the end) must train the same weights."""
    from safetensors.torch import load_file

    runs = {}
    for name, training in (("never", {"eval_strategy": "no"}), ("often", {"eval_strategy": "steps", "eval_steps": 1}),
                           ("epochs", {"epochs": 2, "eval_strategy": "epoch"})):
        recipe = _recipe(toy, tmp_path / name, dropout={"schedule": "all=0.2"},
                         training={"epochs": 2, "eval_strategy": "no", **training})
        metrics = train(recipe)
        runs[name] = (load_file(tmp_path / name / "run" / "model" / "model.safetensors"), metrics,
                      [s.get("loss") for s in read_jsonl(tmp_path / name / "run" / "steps.jsonl")])
    never, often, epochs = runs["never"], runs["often"], runs["epochs"]
    for other in (often, epochs):
        assert other[2] == never[2]  # every logged training loss
        assert set(other[0]) == set(never[0])
        assert all(torch.equal(other[0][k], never[0][k]) for k in never[0])  # bit-identical weights
        assert other[1]["validation"]["accuracy"] == never[1]["validation"]["accuracy"]
