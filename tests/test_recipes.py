"""Every recipe loads and validates; every launch config is a valid accelerate config with its command."""

from pathlib import Path

import pytest
import yaml

from dropout_tune.recipe import Recipe
from dropout_tune.recipe_catalog import RECIPES_DIR

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))  # the shipped copies (recipes/ at the top links there)
LAUNCH = sorted((RECIPES_DIR / "accelerate").glob("*.yaml"))


def test_the_required_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"rotten_tomatoes", "rotten_tomatoes_off_after", "rotten_tomatoes_early", "rotten_tomatoes_late", "snli",
            "vader_movies", "glue_sst2", "glue_mrpc", "rotten_tomatoes_lora", "rotten_tomatoes_variational",
            "rotten_tomatoes_drophead"} <= names
    assert {"cpu_1proc", "cpu_2proc", "multi_gpu_ddp", "fsdp"} <= {p.stem for p in LAUNCH}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_names_its_launch_command(path):
    recipe = Recipe.from_yaml(path)
    assert recipe.name == path.stem
    header = path.read_text().split("\nname:")[0]
    assert f"-m dropout_tune.train recipes/{path.name}" in header
    assert "accelerate launch" in header
    assert recipe.dropout.parsed_schedule() is not None  # every recipe schedules dropout
    assert Recipe.from_dict(recipe.to_dict()) == recipe  # the resolved config round-trips


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.stem)
def test_launch_config_is_small_commented_and_valid(path):
    from accelerate.commands.config.config_args import ClusterConfig

    text = path.read_text()
    assert text.startswith("#") and "accelerate launch --config_file recipes/accelerate/" + path.name in text
    data = yaml.safe_load(text)
    config = ClusterConfig.from_yaml_file(str(path))  # accelerate's own parser
    assert config.num_processes == data["num_processes"]
    assert len(text.splitlines()) <= 30


def test_overrides_and_bad_recipes(tmp_path):
    recipe = Recipe.from_yaml(RECIPES[0], ["training.epochs=3", "dropout.schedule=hidden=0.2"])
    assert recipe.training.epochs == 3.0 and recipe.dropout.parsed_schedule().roles == ("hidden",)
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        Recipe.from_yaml(RECIPES[0], ["optim.learnig_rate=1e-4"])
    with pytest.raises(ValueError, match="training.batch_size: expected an integer"):
        Recipe.from_yaml(RECIPES[0], ["training.batch_size=lots"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("dropout: {schedule: {hidden: {shape: late, p: 0.1, start: 1.5}}}\n")
    with pytest.raises(ValueError, match=r"dropout.schedule: hidden.start"):
        Recipe.from_yaml(bad)
    with pytest.raises(FileNotFoundError):
        Recipe.from_yaml(tmp_path / "missing.yaml")


def test_every_float_spelling_is_a_number(tmp_path):
    path = tmp_path / "floats.yaml"
    path.write_text("optim: {learning_rate: 2e-5, warmup_ratio: .1, max_grad_norm: 1E+1}\n"
                    "regularization: {weight_decay: 1E-2, label_smoothing: 5e-2}\ntraining: {epochs: 3}\n")
    recipe = Recipe.from_yaml(path, ["regularization.rdrop_alpha=1e-1"])
    assert recipe.optim.learning_rate == 2e-5 and recipe.optim.warmup_ratio == 0.1
    assert recipe.optim.max_grad_norm == 10.0 and recipe.regularization.weight_decay == 0.01
    assert recipe.regularization.label_smoothing == 0.05 and recipe.regularization.rdrop_alpha == 0.1
    assert recipe.training.epochs == 3.0
    assert Recipe.from_dict({"optim": {"learning_rate": "3e-5"}}).optim.learning_rate == 3e-5  # a quoted value


@pytest.mark.parametrize("override, message", [
    ("optim.learning_rate=.nan", "optim.learning_rate: nan is not a finite number"),
    ("training.epochs=.nan", "training.epochs: nan is not a finite number"),
    ("training.epochs=.inf", "training.epochs: inf is not a finite number"),
    ("optim.warmup_ratio=.NaN", "optim.warmup_ratio: nan is not a finite number"),
    ("regularization.weight_decay=.nan", "regularization.weight_decay: nan is not a finite number"),
    ("optim.max_grad_norm=-.inf", "optim.max_grad_norm: -inf is not a finite number"),
])
def test_non_finite_numbers_are_refused_naming_the_field(override, message):
    with pytest.raises(ValueError) as err:
        Recipe.from_dict({}, [override])
    assert str(err.value) == message


def test_a_seed_numpy_cannot_take_and_a_yaml_syntax_error_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"training.seed: -1 is outside \[0, 2\*\*32\)"):
        Recipe.from_dict({}, ["training.seed=-1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: [1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML: expected ',' or '\]'.*\(line 3, column 1\)"):
        Recipe.from_yaml(bad)


def test_relative_data_paths_are_read_from_the_recipes_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "reviews.csv").write_text("text,label\na,0\nb,1\n")
    (folder / "recipe.yaml").write_text("data: {task: data/reviews.csv}\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: data/reviews.csv is not under the working directory
    recipe = Recipe.from_yaml("project/recipe.yaml")
    assert recipe.data.task == str((folder / "data" / "reviews.csv").resolve())
    assert Recipe.from_yaml("project/recipe.yaml", ["data.task=sst2"]).data.task == "sst2"  # a task name stays
    (folder / "missing.yaml").write_text("data: {task: data/nope.csv}\n")
    with pytest.raises(ValueError, match=r"data.task: 'data/nope.csv' is in neither the recipe's folder .*project "
                                         r"nor the working directory"):
        Recipe.from_yaml(folder / "missing.yaml")


def test_a_missing_local_path_is_not_called_an_unknown_task(tmp_path, monkeypatch):
    from dropout_tune.data import load_task

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such file or directory: data/x.csv \(relative to the working"):
        load_task("data/x.csv")


def test_training_takes_trainingarguments_names():
    recipe = Recipe.from_dict({"training": {"num_train_epochs": 2, "per_device_train_batch_size": 4,
                                            "per_device_eval_batch_size": 8, "learning_rate": 1e-4,
                                            "lr_scheduler_type": "cosine", "weight_decay": 0.01,
                                            "report_to": "tensorboard", "gradient_checkpointing": True,
                                            "save_total_limit": 2}},
                              ["training.num_train_epochs=3"])
    t = recipe.training
    assert (t.epochs, t.batch_size, t.eval_batch_size) == (3.0, 4, 8)
    assert recipe.optim.learning_rate == 1e-4 and recipe.optim.lr_scheduler == "cosine"
    assert recipe.regularization.weight_decay == 0.01 and t.report_to == ["tensorboard"]
    assert t.trainer_args == {"gradient_checkpointing": True, "save_total_limit": 2}
    assert Recipe.from_dict(yaml.safe_load(recipe.to_yaml())) == recipe  # a run's recipe.yaml reloads the same


@pytest.mark.parametrize("override, message", [
    ("training.num_train_epoch=1", "training.num_train_epoch: unknown key; did you mean 'num_train_epochs'?"),
    ("training.save_totl_limit=1", "training.save_totl_limit: unknown key; did you mean 'save_total_limit'?"),
    ("training.trainer_args.save_totl_limit=1",
     "training.trainer_args.save_totl_limit: not a TrainingArguments field; did you mean 'save_total_limit'?"),
    ("training.trainer_args.num_train_epochs=1", "training.trainer_args.num_train_epochs: the recipe's own key; "
                                                 "set training.epochs"),
    ("training.save_steps=5", "training.save_steps: set by the recipe from its own keys; set "
                              "training.save_checkpoints"),
    ("training.learning_rate=1e-3", "training.learning_rate: is optim.learning_rate, which the recipe sets to 1e-05"),
    ("training.load_best_model_at_end=true", "set training.save_checkpoints: true"),
    ("training.early_stopping_patience=0", "training.early_stopping_patience: 0 must be > 0"),
])
def test_trainingarguments_names_that_do_not_fit_are_named(override, message):
    with pytest.raises(ValueError) as err:
        Recipe.from_dict({"optim": {"learning_rate": 1e-5}}, [override])
    assert message in str(err.value)


def test_early_stopping_needs_evaluations():
    with pytest.raises(ValueError, match="training.early_stopping_patience: needs evaluations"):
        Recipe.from_dict({"training": {"early_stopping_patience": 2, "eval_strategy": "no"}})
