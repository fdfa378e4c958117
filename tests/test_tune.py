"""`dropout-tune tune`: the space, bad input, a tiny search's outputs, continuing, a killed search, two workers,
the test split never evaluated during the search, pruning, the executor, the confirm verdict, the Ray backend."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from dropout_tune import cli
from dropout_tune.recipe import Recipe
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task
from dropout_tune.tune.confirm import Confirmation
from dropout_tune.tune.objective import TrialOutcome, run_trial
from dropout_tune.tune.search import TuneSettings, run_tune
from dropout_tune.tune.space import SearchSpace, apply_params

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("embedding", "attention", "hidden", "classifier")  # a BERT's roles
TRAIN, VALIDATION, TEST = 32, 16, 12  # distinct sizes: an evaluation's dataset tells its split


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    save_tiny_text_model(tmp / "model")
    write_toy_text_task(tmp / "data", sizes=(TRAIN, VALIDATION, TEST))
    recipe = {"name": "toy", "model": {"name": str(tmp / "model")},
              "data": {"task": str(tmp / "data"), "max_length": 16},
              "dropout": {"schedule": "all=0.1"},
              "training": {"max_steps": 4, "batch_size": 8, "eval_strategy": "steps", "eval_steps": 2,
                           "logging_steps": 1, "seed": 1}}
    (tmp / "toy.yaml").write_text(yaml.safe_dump(recipe))
    return tmp


def _rows(out):
    with open(out / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _finished(rows):
    return [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]


# --- the space --------------------------------------------------------------------------------------------------

def test_space_expands_rates_and_refuses_what_the_model_lacks():
    space = SearchSpace.from_dict({"rate": [0.0, 0.2], "rate.hidden": {"low": 0.05, "high": 0.1},
                                   "shape": ["early", "late"], "weight_decay": 0.01}, ROLES)
    assert [n for n in space.params if n.startswith("rate.")] == [f"rate.{r}" for r in ROLES]
    assert (space.params["rate.hidden"].low, space.params["rate.attention"].high) == (0.05, 0.2)
    assert space.fixed() == {"weight_decay": 0.01}
    with pytest.raises(ValueError, match="search.rate.lora: the model has no lora dropout"):
        SearchSpace.from_dict({"rate.lora": [0, 0.1]}, ROLES)
    with pytest.raises(ValueError, match="search.shape: 'cosine2' is not one of"):
        SearchSpace.from_dict({"shape": ["cosine2"]}, ROLES)
    with pytest.raises(ValueError, match=r"search.rate.hidden: 1.5 is outside \[0.0, 1.0\)"):
        SearchSpace.from_dict({"rate.hidden": [0, 1.5]}, ROLES)
    with pytest.raises(ValueError, match="search.shape: empty list"):
        SearchSpace.from_dict({"shape": []}, ROLES)
    with pytest.raises(ValueError, match="search.shape: empty choices"):
        SearchSpace.from_dict({"shape": {"choices": []}}, ROLES)
    assert "label_smoothing" not in SearchSpace.default(ROLES, regression=True).params


def test_shape_parameters_are_drawn_only_with_their_shape():
    import optuna

    space = SearchSpace.default(ROLES)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(30):
        values = space.suggest(study.ask())
        shape_params = {n for n in values if "." in n and not n.startswith("rate.")}
        expected = {"off_after": {"off_after.at"}, "early": {"early.until"}, "late": {"late.start"},
                    "linear": {"linear.end"}, "constant": set()}[values["shape"]]
        assert shape_params == expected
        seen.add(values["shape"])
        recipe = apply_params(Recipe.from_dict({"dropout": {"schedule": "all=0.1"}}), values, ROLES)
        schedule = recipe.dropout.parsed_schedule()
        assert schedule.roles == ROLES  # the recipe's 'all' is narrowed to the model's roles
        assert schedule["hidden"].max_rate == pytest.approx(values["rate.hidden"])
    assert seen == {"constant", "off_after", "early", "late", "linear"}


def test_the_recipes_search_section_is_the_space_and_takes_overrides(tmp_path):
    from dropout_tune.tune.search import load_recipe_and_space

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"training": {"epochs": 2}, "search": {"rate": [0.0, 0.2], "shape": ["early"]}}))
    recipe, section = load_recipe_and_space(str(path), ("search.rate=[0,0.1]", "training.seed=7"))
    assert recipe.name == "r" and recipe.training.seed == 7 and recipe.training.epochs == 2
    assert section == {"rate": [0, 0.1], "shape": ["early"]}
    assert load_recipe_and_space(str(ROOT / "recipes" / "tune_rotten_tomatoes.yaml"))[1] is None


# --- bad input ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,space,needle", [
    (["--trials", "0"], None, "--trials: 0 must be >= 1"),
    (["--trials", "2"], {"rate.hiden": [0, 0.2]}, "search.rate.hiden: unknown parameter; did you mean 'rate.hidden'"),
    (["--trials", "2"], {"rate": [0.2, 0.1]}, "empty range [0.2, 0.1]"),
    (["--trials", "2", "--storage", "sqlite:////no/such/dir/study.db"], None, "cannot be opened"),
    (["--trials", "2", "--storage", "nosuchdb://x"], None, "cannot be opened"),
])
def test_bad_input_is_one_line_and_exit_2_before_training(toy, tmp_path, capsys, extra, space, needle):
    args = ["tune", str(toy / "toy.yaml"), "-o", str(tmp_path / "out"), *extra]
    if space is not None:
        (tmp_path / "space.yaml").write_text(yaml.safe_dump({"search": space}))
        args += ["--space", str(tmp_path / "space.yaml")]
    assert cli.main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "out").exists()  # nothing created, not even an empty output directory


@pytest.mark.parametrize("extra,space,needle", [
    (["--seed", "-1"], None, "--seed: -1 must be >= 0"),
    ([], "search:\n  rate: [0, 0.2\n", "--space "),  # a YAML syntax error
    ([], "search:\n  weight_decay: [0, .inf]\n", "search.weight_decay: inf is not a finite number"),
    ([], "search:\n  learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true, step: 1.0e-5}\n",
     "search.learning_rate: log and step do not go together"),
])
def test_bad_space_or_seed_is_one_line_and_creates_nothing(toy, tmp_path, capsys, extra, space, needle):
    args = ["tune", str(toy / "toy.yaml"), "-o", str(tmp_path / "out"), "--trials", "2", *extra]
    if space is not None:
        (tmp_path / "space.yaml").write_text(space)
        args += ["--space", str(tmp_path / "space.yaml")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, lines
    if space is not None and "[0, 0.2" in space:
        assert "space.yaml: not valid YAML" in lines[0] and "line 3" in lines[0], lines
    assert not (tmp_path / "out").exists()  # no study.db, no empty folder


# --- a tiny search --------------------------------------------------------------------------------------------------

def test_tiny_search_writes_outputs_continues_and_never_evaluates_test(toy, tmp_path, monkeypatch, capsys):
    from transformers import Trainer

    evaluations = []  # (run directory, examples evaluated) for every evaluation of every Trainer
    original = Trainer.evaluation_loop

    def recording(self, dataloader, *args, **kwargs):
        evaluations.append((self.args.output_dir, len(dataloader.dataset)))
        return original(self, dataloader, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluation_loop", recording)
    out = tmp_path / "out"
    args = ["tune", str(toy / "toy.yaml"), "--trials", "4", "--confirm-seeds", "2", "-o", str(out)]
    assert cli.main(args) == 0
    for name in ("trials.csv", "best_recipe.yaml", "report.md", "history.png", "importance.png", "study.db",
                 "confirm/confirm.json", "tune.log", "search.json"):
        assert (out / name).is_file(), name
    rows = _rows(out)
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3] and len(_finished(rows)) == 4
    assert {"value", "steps", "budget_steps", "params_rate.hidden", "params_shape"} <= set(rows[0])
    assert all(int(r["steps"]) <= int(r["budget_steps"]) == 4 for r in rows)
    # the search evaluated validation only; the confirm stage (2 configurations x 2 seeds) evaluated test
    search = [size for directory, size in evaluations if f"{os.sep}trials{os.sep}" in directory]
    confirm = [size for directory, size in evaluations if f"{os.sep}confirm{os.sep}" in directory]
    assert search and set(search) == {VALIDATION}
    assert confirm.count(TEST) == 4
    # best_recipe.yaml is a recipe `train` runs as it is, with the best trial's values
    best = Recipe.from_yaml(out / "best_recipe.yaml")
    best_row = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: (float(r["value"]),
                                                                                  -int(r["number"])))
    assert best.dropout.parsed_schedule()["hidden"].max_rate == pytest.approx(float(best_row["params_rate.hidden"]))
    # progress: a line per trial and per confirm run, printed and kept in OUT/tune.log
    printed = capsys.readouterr().out
    log = (out / "tune.log").read_text()
    for k in range(1, 5):
        assert re.search(rf"^\[trial {k}/4\] #\d+ rate\.\S+=[\d.]+ .*: .*\(\d+s(, ETA \d+s)?\)$", printed, re.M), k
        assert f"[trial {k}/4] #" in log
    for k, variant in enumerate(["found", "found", "recipe", "recipe"], 1):
        line = rf"\[confirm {k}/4\] {variant} seed \d+$"
        assert re.search(line, printed, re.M) and re.search(line, log, re.M), k
    assert "best: trial" in log and json.loads((out / "confirm" / "confirm.json").read_text())["verdict"] in log
    # ... and reproduces its trial: evaluating only at the end trains the same weights as the trial's rungs did
    from dropout_tune.train import train

    again = train(Recipe.from_yaml(out / "best_recipe.yaml", ["training.eval_strategy=no",
                                                                f"training.output_dir={tmp_path / 'again'}"]))
    assert again["validation"]["accuracy"] == pytest.approx(float(best_row["value"]), abs=1e-12)
    report = (out / "report.md").read_text()
    for needle in ("## Best configuration", "## Compute", "## Which knobs mattered", "found − recipe (paired)",
                   "The found configuration", "Confirm seeds 2, 3; every search trial trained at seed 1"):
        assert needle in report, needle
    # confirm seeds are disjoint from the search's (the recipe's seed 1): no confirm run repeats a trial
    confirmed = yaml.safe_load((out / "confirm" / "confirm.json").read_text())
    assert confirmed["seeds"] == [2, 3] and confirmed["search_seed"] == 1
    assert sorted(p.name for p in (out / "confirm" / "found").iterdir()) == ["seed2", "seed3"]
    before = {r["number"]: (r["value"], r["params_rate.hidden"]) for r in rows}
    logs = {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/steps.jsonl")}
    # the same command with more trials continues the study: old trials kept, not rerun, new ones differ
    assert cli.main(["tune", str(toy / "toy.yaml"), "--trials", "6", "--confirm-seeds", "0", "-o", str(out)]) == 0
    rows = _rows(out)
    assert len(_finished(rows)) == 6 and [int(r["number"]) for r in rows] == list(range(6))
    assert {r["number"]: (r["value"], r["params_rate.hidden"]) for r in rows[:4]} == before
    assert {p: p.stat().st_mtime_ns for p in logs} == logs
    old = {tuple(sorted((k, v) for k, v in r.items() if k.startswith("params_"))) for r in rows[:4]}
    assert not any(tuple(sorted((k, v) for k, v in r.items() if k.startswith("params_"))) in old for r in rows[4:])


def test_a_different_recipe_does_not_continue_the_study(toy, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["tune", str(toy / "toy.yaml"), "--trials", "1", "--confirm-seeds", "0", "-o", str(out)]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main(base + ["--set", "training.max_steps=6"]) == 2
    assert "differs at training.max_steps" in capsys.readouterr().err


def test_pruned_trials_stop_early_and_record_their_steps(toy, tmp_path, monkeypatch):
    """The Optuna wiring: a trial reporting worse values than the first is pruned at the first rung."""
    from dropout_tune.tune import optuna_backend

    def fake_run_trial(recipe, reporter, **options):
        value = 1.0 - recipe.dropout.parsed_schedule()["hidden"].max_rate  # more dropout, worse (by fiat)
        reports = []
        for step in (2, 4, 6, 8):
            reports.append((step, value))
            if reporter(value, step, 8) and step < 8:
                return TrialOutcome(value, step, 8, True, reports)
        return TrialOutcome(value, 8, 8, False, reports)

    monkeypatch.setattr(optuna_backend, "run_trial", fake_run_trial)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"rate.hidden": [0.0, 0.3]}))
    result = run_tune(TuneSettings(str(toy / "toy.yaml"), str(tmp_path / "out"), trials=8, space_path=str(space),
                                   confirm_seeds=0, overrides=("training.max_steps=8",)))
    states = [r.state for r in result.records]
    assert len(states) == 8 and "PRUNED" in states and states[0] == "COMPLETE"
    for r in result.records:  # one rung below the budget: the first evaluation (step 2); the next would be step 8
        assert r.steps == (2 if r.state == "PRUNED" else 8)
    assert result.best.value == max(r.value for r in result.records if r.state == "COMPLETE")
    report = result.report_path.read_text()
    spent = sum(r.steps for r in result.records)
    assert f"{spent} optimizer steps spent" in report and "without pruning: 64" in report


def test_successive_halving_has_no_rung_at_three_quarters_of_training():
    """Rungs at the first evaluation and 4x further: a trial that leads at step 2 and then collapses runs on to the
    end (a factor of 3 would stop it at step 6, ranking it within noise at 3/4 of training)."""
    import optuna

    from dropout_tune.tune.optuna_backend import make_pruner
    from dropout_tune.tune.plan import Plan

    plan = Plan(recipe={}, search_recipe={}, space={}, roles=(), metric="accuracy", output_dir="", storage="",
                study="s", trials=4, pruner="asha", seed=0, workers=1, eval_steps=2, budget_steps=8, heartbeat_s=1,
                grace_s=2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(plan))
    first = study.ask()
    for step in (2, 4, 6, 8):
        first.report(0.9, step)
        assert not first.should_prune()  # also records its value at each rung, as the objective's reporter does
    study.tell(first, 0.9)
    second = study.ask()
    second.report(0.95, 2)
    assert not second.should_prune()  # the best at the first rung is promoted
    decisions = []
    for step in (4, 6):
        second.report(0.1, step)
        decisions.append(second.should_prune())
    assert decisions == [False, False]
    third = study.ask()
    third.report(0.5, 2)
    assert third.should_prune()  # below the top quarter at the first rung


def test_report_callback_stops_a_real_trainer(toy, tmp_path):
    recipe = Recipe.from_yaml(toy / "toy.yaml", ["training.max_steps=8", f"training.output_dir={tmp_path / 'r'}"])
    outcome = run_trial(recipe, lambda value, step, total: step >= 4)
    assert outcome.pruned and outcome.steps == 4 and [s for s, _ in outcome.reports] == [2, 4]
    full = run_trial(recipe, lambda value, step, total: step == total)  # a stop at the last step changes nothing
    assert not full.pruned and full.steps == full.budget_steps == 8 and [s for s, _ in full.reports] == [2, 4, 6, 8]


# --- resuming and sharing ----------------------------------------------------------------------------------------

def test_a_new_database_opened_by_two_processes_at_once_opens_for_both(tmp_path, monkeypatch):
    """Another process stamps the new schema between this one's check and insert (seen in CI: the parent of the
    kill test reading the study while the child created it); opening must still succeed."""
    from alembic.runtime.migration import HeadMaintainer
    from optuna.storages import RDBStorage

    from dropout_tune.tune.storage import open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    insert = HeadMaintainer._insert_version
    raced = []

    def insert_after_another_process(self, version):
        if not raced:
            raced.append(True)
            RDBStorage(url)  # the other process: creates and stamps the same file between our check and insert
        return insert(self, version)

    monkeypatch.setattr(HeadMaintainer, "_insert_version", insert_after_another_process)
    storage = open_storage(url)
    assert raced and storage.get_all_studies() == []


_SLOW_SEARCH = """
import sys, time, transformers
original = transformers.Trainer.training_step
def slow(self, *args, **kwargs):
    time.sleep(0.8)
    return original(self, *args, **kwargs)
transformers.Trainer.training_step = slow
from dropout_tune.tune.search import TuneSettings, run_tune
run_tune(TuneSettings(sys.argv[1], sys.argv[2], trials=3, confirm_seeds=0, heartbeat_s=1, grace_s=3,
                      storage=sys.argv[3] or None))
"""


def _kill_mid_trial_then_rerun(toy, out, storage=None):
    """A search killed (SIGKILL) while a trial is training, then the same search run again: exactly 3 finished
    trials, the killed one marked FAIL (its heartbeat stopped) and replaced."""
    import optuna

    url = storage or f"sqlite:///{out / 'study.db'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    stderr = out.parent / "child.stderr"
    with stderr.open("w") as sink:
        child = subprocess.Popen([sys.executable, "-c", _SLOW_SEARCH, str(toy / "toy.yaml"), str(out), storage or ""],
                                 env=env, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.5)
            if storage is None and not (out / "study.db").is_file():
                continue
            try:
                trials = optuna.load_study(study_name="toy", storage=url).trials
            except Exception:  # noqa: BLE001 - the study may not exist yet
                continue
            if any(t.state.name == "RUNNING" and t.intermediate_values for t in trials):
                break  # mid-trial: it has reported an evaluation and is training on
        if child.poll() is not None:
            pytest.fail(f"the search ended before it could be killed mid-trial:\n{stderr.read_text()[-2000:]}")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    result = run_tune(TuneSettings(str(toy / "toy.yaml"), str(out), trials=3, confirm_seeds=0, heartbeat_s=1,
                                   grace_s=3, storage=storage))
    states = [r.state for r in result.records]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert [r["state"] for r in _rows(out)] == states
    failed = optuna.load_study(study_name="toy", storage=url).trials[states.index("FAIL")]
    assert failed.intermediate_values  # the killed trial, not a claim that stepped back


def test_a_killed_search_rerun_ends_with_exactly_the_requested_trials(toy, tmp_path):
    _kill_mid_trial_then_rerun(toy, tmp_path / "out")


def test_two_workers_share_one_study(toy, tmp_path):
    import optuna

    out = tmp_path / "out"
    result = run_tune(TuneSettings(str(toy / "toy.yaml"), str(out), trials=4, workers=2, confirm_seeds=0))
    assert [r.number for r in result.records] == [0, 1, 2, 3]
    assert all(r.state in ("COMPLETE", "PRUNED") for r in result.records)
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{out / 'study.db'}")
    assert {t.user_attrs["worker"] for t in study.trials} == {0, 1}
    runs = sorted(p.parent.name for p in (out / "trials").glob("*/steps.jsonl"))
    assert runs == ["0000", "0001", "0002", "0003"]  # each trial trained once, in its own directory
    params = [tuple(sorted(r.params.items())) for r in result.records]
    assert len(set(params)) == 4


# --- a real PostgreSQL server, and a journal file (tests/conftest.py starts the server) -----------------------------

def test_two_workers_on_postgresql_finish_exactly_the_requested_trials(toy, tmp_path, postgres_server):
    import optuna

    url = postgres_server()
    out = tmp_path / "out"
    args = ["tune", str(toy / "toy.yaml"), "--trials", "4", "--workers", "2", "--storage", url, "--confirm-seeds",
            "0", "-o", str(out)]
    assert cli.main(args) == 0
    trials = optuna.load_study(study_name="toy", storage=url).trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4 and len({t.number for t in trials}) == len(trials)
    assert {t.user_attrs["worker"] for t in finished} == {0, 1}
    assert not (out / "study.db").exists()  # the study lives in the server, nothing in a local file
    assert [int(r["number"]) for r in _rows(out)] == [t.number for t in trials]
    runs = sorted(p.parent.name for p in (out / "trials").glob("*/steps.jsonl"))
    assert runs == [f"{t.number:04d}" for t in finished]  # each trial trained once


def test_a_killed_worker_on_postgresql_is_failed_and_replaced(toy, tmp_path, postgres_server):
    _kill_mid_trial_then_rerun(toy, tmp_path / "out", postgres_server())


def test_journal_storage_holds_a_search_and_continues_it(toy, tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out, journal = tmp_path / "out", tmp_path / "study.journal"
    base = ["tune", str(toy / "toy.yaml"), "--storage", f"journal:{journal}", "--confirm-seeds", "0", "-o", str(out)]
    assert cli.main(base + ["--trials", "2", "--workers", "2"]) == 0
    assert cli.main(base + ["--trials", "3"]) == 0
    study = optuna.load_study(study_name="toy", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 3
    assert not (out / "study.db").exists() and len(_finished(_rows(out))) == 3


def test_a_journal_in_a_missing_folder_is_refused_in_one_line(toy, tmp_path, capsys):
    args = ["tune", str(toy / "toy.yaml"), "--trials", "1", "--storage", f"journal:{tmp_path}/no/such/j.log",
            "-o", str(tmp_path / "out")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be opened (folder" in err[0]
    assert not (tmp_path / "out" / "trials").exists()


def test_a_trial_claimed_past_the_target_steps_back_untrained(toy, tmp_path):
    from dropout_tune.tune.optuna_backend import Objective, TargetReached, load_study
    from dropout_tune.tune.search import prepare

    plan = prepare(TuneSettings(str(toy / "toy.yaml"), str(tmp_path / "out"), trials=1, confirm_seeds=0))
    study = load_study(plan)
    with warnings.catch_warnings():  # "heartbeat is meant for optimize": this ask() stands in for another worker
        warnings.simplefilter("ignore", UserWarning)
        study.ask()  # another worker's trial, running: it covers the target of 1
    with pytest.raises(TargetReached):
        study.optimize(Objective(plan, 0), n_trials=1, catch=())
    assert study.trials[-1].state.name == "FAIL" and study.trials[-1].user_attrs["note"].startswith("not run")
    assert not (tmp_path / "out" / "trials").exists()


# --- executor and confirm ------------------------------------------------------------------------------------------

def test_executor_reuses_identical_resolved_recipes_only(toy, tmp_path, monkeypatch):
    import dropout_tune.train as train_module
    from dropout_tune.tune.executor import run_recipes

    calls = []
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda recipe: calls.append(recipe.name) or real_train(recipe))
    base = Recipe.from_yaml(toy / "toy.yaml", [f"training.output_dir={tmp_path}/{{name}}"])
    renamed = Recipe.from_dict({**base.to_dict(), "name": "same-but-renamed"})
    other_seed = Recipe.from_yaml(toy / "toy.yaml", ["training.seed=2", f"training.output_dir={tmp_path}/{{name}}2"])
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    metrics = run_recipes([base, renamed, other_seed], storage, study="cmp")
    assert calls == ["toy", "toy"] and metrics[0] == metrics[1] and metrics[2]["seed"] == 2
    assert all(m["test"]["n_examples"] == TEST for m in metrics)
    again = run_recipes([other_seed, base], storage, study="cmp")
    assert len(calls) == 2 and again == [metrics[2], metrics[0]]  # resumed from the storage, nothing retrained
    run_recipes([base], storage, study="cmp", reuse=False)
    assert len(calls) == 3


def test_a_job_claimed_by_another_worker_is_not_run_twice(tmp_path, monkeypatch):
    import optuna

    import dropout_tune.train as train_module
    from dropout_tune.run_identity import recipe_key
    from dropout_tune.tune.executor import ClaimLost, JobPlan, _Job

    monkeypatch.setattr(train_module, "train", lambda recipe: pytest.fail("a claimed job was trained again"))
    recipe = Recipe()
    plan = JobPlan((recipe.to_dict(),), ("only",), f"sqlite:///{tmp_path / 'jobs.db'}", "jobs", 5, 20, None)
    study = optuna.create_study(storage=plan.storage, study_name="jobs", load_if_exists=True)
    first = study.ask()  # another worker's claim, still running
    first.set_user_attr("job_key", recipe_key(recipe))
    with pytest.raises(ClaimLost):
        study.optimize(_Job(plan, 0, recipe_key(recipe)), n_trials=1, catch=())
    second = study.trials[-1]
    assert second.state.name == "FAIL" and second.user_attrs["note"].startswith("not run")


@pytest.mark.parametrize("found,recipe,word", [
    ({1: 0.80, 2: 0.82, 3: 0.81}, {1: 0.78, 2: 0.79, 3: 0.785}, "better"),
    ({1: 0.70, 2: 0.72, 3: 0.71}, {1: 0.78, 2: 0.79, 3: 0.785}, "worse"),
    ({1: 0.80, 2: 0.76, 3: 0.79}, {1: 0.78, 2: 0.79, 3: 0.77}, "within noise"),
])
def test_confirm_verdict_follows_the_paired_interval(found, recipe, word):
    from scipy import stats

    c = Confirmation("accuracy", found, recipe)
    assert f"configuration is {word}" in c.verdict()
    assert c.p_value() == pytest.approx(stats.ttest_rel(list(found.values()), list(recipe.values())).pvalue)
    assert "found − recipe (paired)" in c.table()
    assert "one seed" in Confirmation("accuracy", {1: 0.8}, {1: 0.7}).verdict()


def test_a_nan_confirm_score_is_no_verdict_not_within_noise():
    nan = float("nan")
    c = Confirmation("accuracy", {1: nan, 2: 0.80, 3: 0.81}, {1: 0.78, 2: 0.79, 3: 0.785})
    assert c.verdict().startswith("No verdict: found/seed1 gave no finite test accuracy (NaN)")
    assert "within noise" not in c.verdict() and "nan, nan" not in c.verdict()
    assert c.p_value() is None and c.interval() is None
    assert "p = —" in c.table()


def test_differences_equal_up_to_rounding_have_no_p_value():
    from dropout_tune.compare import Comparison

    found, recipe = {1: 0.8, 2: 0.9, 3: 0.7}, {1: 0.7, 2: 0.8, 3: 0.6}  # +0.1 each, rounded differently (~1e-16)
    assert len({found[s] - recipe[s] for s in found}) > 1  # the float differences are not all equal
    c = Confirmation("accuracy", found, recipe)
    assert c.p_value() is None and "p = —" in c.table()
    assert "by the same +0.1000 test accuracy on each of 3 seeds" in c.verdict()
    metrics = lambda v: {"main_metric": "accuracy", "test": {"accuracy": v}, "validation": {"accuracy": v},  # noqa
                         "train": {"runtime_s": 1.0}}
    comparison = Comparison("accuracy", {"base": {s: metrics(v) for s, v in recipe.items()},
                                         "x": {s: metrics(v) for s, v in found.items()}})
    assert comparison.differences()["x"]["p"] is None and "| — |" in comparison.table()


def test_a_trial_whose_last_evaluation_is_nan_has_no_value(toy, tmp_path, monkeypatch):
    """An earlier evaluation must not stand in for the last one: the trial fails, saying why."""
    import dropout_tune.metrics as metrics_module

    real = metrics_module.make_compute_metrics

    def nan_at_the_end(task):
        compute, calls = real(task), []

        def wrapped(prediction):
            calls.append(1)
            out = compute(prediction)
            if len(calls) >= 2:  # the evaluation at the last step (4 of 4, every 2)
                out[task.main_metric] = float("nan")
            return out
        return wrapped

    monkeypatch.setattr(metrics_module, "make_compute_metrics", nan_at_the_end)
    recipe = Recipe.from_yaml(toy / "toy.yaml", [f"training.output_dir={tmp_path / 'trial'}"])
    outcome = run_trial(recipe, lambda value, step, total: False)
    assert [step for step, _ in outcome.reports] == [2]  # the finite evaluation, reported to the engine
    assert math.isnan(outcome.value) and outcome.failed
    assert outcome.note == "validation accuracy was NaN at step 4 (its last evaluation): no value to rank"


# --- Ray ------------------------------------------------------------------------------------------------------------

def test_missing_ray_is_a_one_line_error(monkeypatch):
    from dropout_tune.tune.ray_backend import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"--backend ray: Ray Tune is not installed .*dropout-tune\[ray\]"):
        require_ray()


def test_ray_backend_finishes_a_two_trial_search(toy, tmp_path):
    pytest.importorskip("ray.tune")
    out = tmp_path / "out"
    result = run_tune(TuneSettings(str(toy / "toy.yaml"), str(out), trials=2, backend="ray", confirm_seeds=0))
    rows = _rows(out)
    assert len(rows) == 2 and len(_finished(rows)) == 2
    assert all(int(r["steps"]) <= int(r["budget_steps"]) == 4 and r["params_shape"] for r in rows)
    assert (out / "report.md").is_file() and (out / "best_recipe.yaml").is_file()
    assert result.best is not None and Recipe.from_yaml(out / "best_recipe.yaml").name == "toy-best"
    trial_lines = [line for line in (out / "tune.log").read_text().splitlines() if "[trial " in line]
    assert len(trial_lines) == 2 and "[trial 1/2] #0 " in trial_lines[0] and "[trial 2/2] #1 " in trial_lines[1]
    # Ray's OptunaSearch recorded its trials in the search's own storage and study: the dashboard shows them too
    import optuna

    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 2 and all(t.params.get("shape") for t in study.trials)
    assert (out / "search.json").is_file()


@pytest.mark.parametrize("n, batch, accumulation, epochs, max_steps", [
    (100, 16, 2, 1.0, -1), (100, 16, 3, 2.0, -1), (7, 16, 4, 1.5, -1), (64, 8, 1, 0.5, -1), (100, 16, 2, 1.0, 5)])
def test_the_step_budget_is_the_trainers_own_count(tmp_path, n, batch, accumulation, epochs, max_steps):
    """Ray ASHA's max_t and Optuna's rungs come from total_steps: it must be what the Trainer will run."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from dropout_tune.testing import tiny_model
    from dropout_tune.tune.search import total_steps

    recipe = Recipe.from_dict({"training": {"batch_size": batch, "gradient_accumulation_steps": accumulation,
                                            "epochs": epochs, "max_steps": max_steps}})
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch, num_train_epochs=epochs,
                             gradient_accumulation_steps=accumulation, max_steps=max_steps, report_to="none",
                             use_cpu=True)
    data = Dataset.from_dict({"input_ids": [[1, 2, 3]] * n, "labels": [0] * n})
    trainer = Trainer(model=tiny_model("bert"), args=args, train_dataset=data)
    trainers_count = trainer.set_initial_training_values(args, trainer.get_train_dataloader())[-1]
    assert total_steps(recipe, n) == trainers_count


# --- objectives and constraints ------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needle", [
    (["--objective", "acuracy"], "--objective: 'acuracy' is not a validation metric of this task (one of: accuracy,"),
    (["--objective", "accuracy,accuracy"], "names a metric twice"),
    (["--constraint", "ece<0.05"], "--constraint: 'ece<0.05' must be METRIC<=NUMBER or METRIC>=NUMBER"),
    (["--constraint", "ecee<=0.05"], "--constraint: 'ecee' is not a validation metric"),
    (["--backend", "ray", "--objective", "accuracy,nll"], "--backend ray: --objective and --constraint need the "
                                                           "Optuna backend"),
])
def test_bad_objectives_are_one_line_and_exit_2(toy, tmp_path, capsys, extra, needle):
    if "ray" in extra:
        pytest.importorskip("ray.tune")
    assert cli.main(["tune", str(toy / "toy.yaml"), "--trials", "2", "-o", str(tmp_path / "out"), *extra]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "out").exists()  # nothing created, not even an empty output directory


def test_two_objectives_give_a_pareto_front_its_recipes_and_a_confirmed_choice(toy, tmp_path):
    import optuna

    out = tmp_path / "out"
    args = ["tune", str(toy / "toy.yaml"), "--trials", "4", "--objective", "accuracy,nll", "--confirm-seeds", "1",
            "-o", str(out)]
    assert cli.main(args) == 0
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{out / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["validation accuracy", "validation nll"]
    trials = study.trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)  # no pruning with two objectives
    assert all(not t.intermediate_values for t in trials)
    for t in trials:  # the values are the last validation evaluation's metrics
        assert t.values == [t.user_attrs["metrics"]["accuracy"], t.user_attrs["metrics"]["nll"]]
    front = sorted(t.number for t in study.best_trials)
    # the front: no completed trial dominates a member
    for t in study.best_trials:
        assert not any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values
                       for o in trials)
    assert sorted(p.name for p in (out / "pareto").iterdir()) == [f"trial{n:04d}.yaml" for n in front]
    chosen = max((t for t in study.best_trials), key=lambda t: (t.values[0], -t.number))
    assert f"trial {chosen.number}," in (out / "best_recipe.yaml").read_text().splitlines()[0]
    rows = _rows(out)
    assert {"value_accuracy", "value_nll"} <= set(rows[0])
    report = (out / "report.md").read_text()
    assert "### Pareto front" in report and "no pruning" in report and (out / "pareto.png").is_file()
    assert f"| {chosen.number} (best_recipe.yaml) |" in report
    assert (out / "confirm" / "confirm.json").is_file()
    # the same search with another objective is refused, not mixed in
    assert cli.main(["tune", str(toy / "toy.yaml"), "--trials", "5", "--confirm-seeds", "0", "-o", str(out)]) == 2


def test_a_constraint_keeps_the_choice_inside_the_bound(toy, tmp_path):
    import optuna

    out = tmp_path / "out"
    base = ["tune", str(toy / "toy.yaml"), "--trials", "3", "--confirm-seeds", "0"]
    assert cli.main(base + ["--constraint", "ece<=1", "-o", str(out)]) == 0  # every trial within
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.trials:
        ece = t.user_attrs["metrics"]["ece"]
        assert t.user_attrs["constraint"] == [pytest.approx(ece - 1)] and t.system_attrs["constraints"] == [
            pytest.approx(ece - 1)]  # Optuna's sampler stored what constraints_func returned
    assert all(r["feasible"] == "True" for r in _rows(out))
    best = max(study.trials, key=lambda t: (t.value, -t.number))
    assert f"trial {best.number}," in (out / "best_recipe.yaml").read_text().splitlines()[0]
    # a bound no trial meets: no configuration is chosen, nothing is confirmed, the report says why
    out2 = tmp_path / "out2"
    assert cli.main(base + ["--constraint", "ece<=-1", "--confirm-seeds", "1", "-o", str(out2)]) == 0
    assert all(r["feasible"] == "False" for r in _rows(out2))
    assert not (out2 / "best_recipe.yaml").exists() and not (out2 / "confirm").exists()
    assert "No completed trial meets it" in (out2 / "report.md").read_text()
