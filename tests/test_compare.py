"""Comparing schedules over seeds: runs, intervals, paired differences, files."""

import json
import math

import pytest

from dropout_tune.compare import (Comparison, Variant, holm, run_comparison, summarize,
                                  variants_from)
from dropout_tune.recipe import Recipe
from dropout_tune.run_identity import recipe_differences
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task


def test_summarize_matches_a_t_interval():
    from scipy import stats

    values = [0.61, 0.64, 0.70, 0.66]
    s = summarize(values)
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert s["mean"] == pytest.approx(mean) and s["std"] == pytest.approx(sd)
    assert s["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * sd / 2)


def test_bad_schedule_variant():
    with pytest.raises(ValueError, match="LABEL=SCHEDULE"):
        variants_from([Recipe()], ["no-equals-sign"])
    with pytest.raises(ValueError, match="hidden.p"):
        variants_from([Recipe()], ["x=hidden=late:1.5:0.5"])


def test_two_schedules_two_seeds(tmp_path):
    save_tiny_text_model(tmp_path / "model")
    write_toy_text_task(tmp_path / "data", sizes=(32, 16, 16))
    base = Recipe.from_dict({"name": "toy", "model": {"name": str(tmp_path / "model")},
                             "data": {"task": str(tmp_path / "data"), "max_length": 16},
                             "training": {"batch_size": 8, "eval_strategy": "no"}})
    variants = variants_from([base], ["const=all=0.1", "off=all=off_after:0.1:at=0.5"])
    comparison = run_comparison(variants, [1, 2], tmp_path / "cmp")
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(data["variants"]) == {"const", "off"}
    for label in ("const", "off"):
        test = data["variants"][label]["test"]
        assert test["n"] == 2 and test["ci95"] is not None
        assert set(data["variants"][label]["per_seed"]) == {"1", "2"}
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    table = comparison.table()
    assert "| const |" in table and "| off |" in table and "±" in table
    # each variant x seed is its own run directory, with the schedule it was given
    steps = (tmp_path / "cmp" / "off" / "seed2" / "steps.jsonl").read_text().splitlines()
    assert json.loads(steps[-1])["dropout/hidden"] == 0.0
    # finished runs are reused, not retrained
    mtime = (tmp_path / "cmp" / "off" / "seed2" / "metrics.json").stat().st_mtime
    run_comparison(variants, [1, 2], tmp_path / "cmp")
    assert (tmp_path / "cmp" / "off" / "seed2" / "metrics.json").stat().st_mtime == mtime


# ---- stale runs, p-values, output checks ------------------------------------------------------------------------------


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == pytest.approx([1.0, None, 1.0])  # capped at 1; None (no test) stays None
    assert holm([0.2]) == [0.2]


def _metrics(test, validation=None):
    return {"main_metric": "accuracy", "test": {"accuracy": test}, "validation": {"accuracy": validation or test},
            "train": {"runtime_s": 1.0}}


def test_three_variants_report_holm_adjusted_paired_p_values():
    from scipy import stats

    scores = {"base": [0.70, 0.72, 0.71, 0.69], "a": [0.74, 0.75, 0.73, 0.74], "b": [0.71, 0.74, 0.70, 0.72]}
    comparison = Comparison("accuracy", {label: {seed: _metrics(v) for seed, v in enumerate(values, 1)}
                                         for label, values in scores.items()})
    raw = [stats.ttest_rel(scores[k], scores["base"]).pvalue for k in ("a", "b")]
    expected = holm(raw)
    differences = comparison.differences()
    assert [differences[k]["p"] for k in ("a", "b")] == pytest.approx(raw)
    assert [differences[k]["p_holm"] for k in ("a", "b")] == pytest.approx(expected)
    table = comparison.table()
    assert "p (Holm)" in table and "Holm-adjusted over the 2 comparisons" in table
    assert f"{expected[0]:.3g}" in table.splitlines()[3]  # the row of variant a
    data = comparison.to_dict()
    assert data["variants"]["b"]["difference_vs_baseline"]["p_holm"] == pytest.approx(expected[1])
    # two variants: one comparison, nothing to adjust
    two = Comparison("accuracy", {k: comparison.results[k] for k in ("base", "a")})
    assert "Holm" not in two.table() and two.differences()["a"]["p_holm"] is None


def _toy_recipe(tmp_path, **training):
    save_tiny_text_model(tmp_path / "model")
    write_toy_text_task(tmp_path / "data", sizes=(48, 8, 8))
    return Recipe.from_dict({"name": "toy", "model": {"name": str(tmp_path / "model")},
                             "data": {"task": str(tmp_path / "data"), "max_length": 16},
                             "training": {"batch_size": 4, "max_steps": 2, "eval_strategy": "no", **training}})


def test_a_run_made_with_another_recipe_is_refused_unless_overwrite(tmp_path, monkeypatch):
    variants = variants_from([_toy_recipe(tmp_path)], ["const=all=0.1"])
    out = tmp_path / "cmp"
    log = []
    first = run_comparison(variants, [1], out, ["data.max_train=16"], log=log.append)
    assert log == ["[1/1] const seed=1"]
    assert first.results["const"][1]["train"]["examples"] == 16

    import dropout_tune.train

    real_train = dropout_tune.train.train
    monkeypatch.setattr(dropout_tune.train, "train", lambda *a, **k: pytest.fail("trained despite the refusal"))
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ValueError, match=r"seed1 holds a run that is not this one \(made with another recipe: "
                                         r"data.max_train: 16 -> 32\); pass --overwrite"):
        run_comparison(variants, [1], out, ["data.max_train=32"], log=log.append)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files  # nothing removed

    monkeypatch.setattr(dropout_tune.train, "train", real_train)
    log.clear()
    second = run_comparison(variants, [1], out, ["data.max_train=32"], log=log.append, overwrite=True)
    assert log[0] == "[1/1] const seed=1"
    assert log[1].startswith(f"overwriting {out / 'const' / 'seed1'}: made with another recipe")
    assert second.results["const"][1]["train"]["examples"] == 32  # new numbers, not the stale run's
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["variants"]["const"]["overrides"] == ["data.max_train=32"]
    assert saved["variants"]["const"]["schedule"]["hidden"] == {"shape": "constant", "p": 0.1}

    log.clear()
    mtime = (out / "const" / "seed1" / "metrics.json").stat().st_mtime_ns
    third = run_comparison(variants, [1], out, ["data.max_train=32"], log=log.append)
    assert log == ["[1/1] const seed=1", f"reusing {out / 'const' / 'seed1'}"]
    assert (out / "const" / "seed1" / "metrics.json").stat().st_mtime_ns == mtime
    assert third.results["const"][1] == second.results["const"][1]


def test_another_schedule_under_the_same_label_is_trained_again_with_overwrite(tmp_path):
    base = _toy_recipe(tmp_path)
    out = tmp_path / "cmp"
    run_comparison(variants_from([base], ["v=all=0.1"]), [1], out, log=lambda _: None)
    with pytest.raises(ValueError, match="dropout.schedule"):
        run_comparison(variants_from([base], ["v=all=off_after:0.1:at=0.5"]), [1], out, log=lambda _: None)
    log = []
    run_comparison(variants_from([base], ["v=all=off_after:0.1:at=0.5"]), [1], out, log=log.append, overwrite=True)
    assert "overwriting" in log[1] and "dropout.schedule" in log[1]
    steps = (out / "v" / "seed1" / "steps.jsonl").read_text().splitlines()
    assert json.loads(steps[-1])["dropout/hidden"] == 0.0  # the new schedule ran


def test_an_unfinished_run_of_the_same_recipe_is_trained_again(tmp_path):
    base = _toy_recipe(tmp_path)
    out = tmp_path / "cmp"
    variants = variants_from([base], ["v=all=0.1"])
    run_comparison(variants, [1], out, log=lambda _: None)
    (out / "v" / "seed1" / "metrics.json").unlink()  # as a killed attempt leaves it
    log = []
    run_comparison(variants, [1], out, log=log.append)
    assert log[1] == f"re-running {out / 'v' / 'seed1'}: an unfinished run of this recipe (no metrics.json)"
    assert (out / "v" / "seed1" / "metrics.json").is_file()


def test_recipe_differences_name_the_keys():
    old = Recipe.from_dict({"dropout": {"schedule": "hidden=0.1"}})
    new = Recipe.from_dict({"dropout": {"schedule": "hidden=0.2"}, "optim": {"learning_rate": 1e-4}})
    assert recipe_differences(old, new) == [
        "dropout.schedule: {'hidden': {'shape': 'constant', 'p': 0.1}} -> {'hidden': {'shape': 'constant', 'p': 0.2}}",
        "optim.learning_rate: 5e-05 -> 0.0001"]
    assert recipe_differences(old, Recipe.from_dict({"dropout": {"schedule": {"hidden": 0.1}}})) == []


@pytest.mark.parametrize("bad, message", [
    ({"overrides": ["training.seed=3"]}, "compare sets training.seed itself"),
    ({"overrides": ["training.output_dir=/tmp/x"]}, "compare sets training.output_dir itself"),
    ({"seeds": [1, 1]}, "repeats a seed"),
    ({"label": "../x"}, "plain folder name"),
])
def test_bad_comparisons_fail_before_training(bad, message, tmp_path, monkeypatch):
    import dropout_tune.train

    monkeypatch.setattr(dropout_tune.train, "train", lambda *a, **k: pytest.fail("trained despite bad input"))
    variants = [Variant(bad.get("label", "v"), Recipe())]
    with pytest.raises(ValueError, match=message):
        run_comparison(variants, bad.get("seeds", [1]), tmp_path / "cmp", bad.get("overrides", ()))


def test_output_that_is_a_file_fails_before_training(tmp_path, monkeypatch):
    import dropout_tune.train

    monkeypatch.setattr(dropout_tune.train, "train", lambda *a, **k: pytest.fail("trained despite bad output"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="compare output directory .*file.*not a directory"):
        run_comparison([Variant("v", Recipe())], [1], tmp_path / "file" / "cmp")


def test_plot_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # any non-Agg backend: plotting must not switch it
    try:
        comparison = Comparison("accuracy", {"a": {1: _metrics(0.7), 2: _metrics(0.72)}, "b": {1: _metrics(0.71)}})
        comparison.plot(tmp_path / "c.png")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)


# ---- compare on the job executor (--workers, --storage) -------------------------------------------------------------


def test_workers_train_variants_in_parallel_processes_and_resume_through_the_storage(tmp_path):
    import optuna

    from dropout_tune.tune.storage import default_storage_url

    variants = variants_from([_toy_recipe(tmp_path)], ["const=all=0.1", "off=all=off_after:0.1:at=0.5"])
    out = tmp_path / "cmp"
    log = []
    first = run_comparison(variants, [1], out, log=log.append, workers=2)
    assert log[-1] == "training 2 runs with 2 worker(s)"
    study = optuna.load_study(study_name="compare", storage=default_storage_url(out))
    jobs = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["label"] for t in jobs) == ["const/seed1", "off/seed1"]  # each trained once
    assert (out / "off" / "seed1" / "metrics.json").is_file()
    assert first.results["off"][1]["test"] == json.loads((out / "off" / "seed1" / "metrics.json").read_text())["test"]

    # a run whose folder is gone is not retrained: the storage knows it finished with this very recipe
    import shutil

    shutil.rmtree(out / "const" / "seed1")
    second = run_comparison(variants, [1], out, log=log.append, workers=2)
    assert second.results["const"][1] == first.results["const"][1]
    assert len(optuna.load_study(study_name="compare", storage=default_storage_url(out)).trials) == len(study.trials)
    assert not (out / "const" / "seed1").exists()


def test_workers_on_postgresql_then_an_identical_rerun_trains_nothing_and_removes_nothing(tmp_path, postgres_server,
                                                                                          monkeypatch):
    import optuna

    import dropout_tune.train as train_module

    url = postgres_server()  # a real server (tests/conftest.py)
    variants = variants_from([_toy_recipe(tmp_path)], ["const=all=0.1", "off=all=off_after:0.1:at=0.5"])
    out = tmp_path / "cmp"
    first = run_comparison(variants, [1, 2], out, log=[].append, workers=2, storage=url)
    jobs = [t for t in optuna.load_study(study_name="compare", storage=url).trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["label"] for t in jobs) == ["const/seed1", "const/seed2", "off/seed1", "off/seed2"]
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}
    assert len([p for p in files if p.name == "metrics.json"]) == 4
    n_trials = len(optuna.load_study(study_name="compare", storage=url).trials)
    monkeypatch.setattr(train_module, "train", lambda recipe: pytest.fail(f"retrained {recipe.training.output_dir}"))
    log = []
    second = run_comparison(variants, [1, 2], out, log=log.append, workers=2, storage=url)
    assert not any(line.startswith(("re-running", "training ")) for line in log), log
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out} == files
    assert len(optuna.load_study(study_name="compare", storage=url).trials) == n_trials  # no job claimed
    assert second.results == first.results


def test_bad_workers_or_storage_are_refused_before_training(tmp_path):
    variants = variants_from([_toy_recipe(tmp_path)], ["const=all=0.1"])
    with pytest.raises(ValueError, match="--workers: 0 must be >= 1"):
        run_comparison(variants, [1], tmp_path / "cmp", workers=0)
    log = []
    with pytest.raises(ValueError, match="--storage 'nosuch://x': cannot be opened"):
        run_comparison(variants, [1], tmp_path / "cmp", workers=2, storage="nosuch://x", log=log.append)
    assert log == [] and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_an_identical_rerun_trains_nothing_removes_nothing_and_prints_the_same_table(tmp_path, workers):
    """The executor trains with overwrite on; the run it records must still read as the same run on a rerun."""
    import subprocess
    import sys

    base = _toy_recipe(tmp_path)
    recipe_file = tmp_path / "toy.yaml"
    recipe_file.write_text(base.to_yaml())
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "dropout_tune.cli", "compare", str(recipe_file), "--schedule", "a=all=0.1",
               "--schedule", "b=all=0.0", "--seeds", "1", "2", "-o", str(out), "--workers", str(workers)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}
    assert len([p for p in files if p.name == "metrics.json"]) == 4
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "training" not in second.stdout and second.stdout.count("reusing") == 4
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}
    assert after == files  # no run file removed, rewritten or added
    table = [line for line in first.stdout.splitlines() if line.startswith("|")]
    assert table and table == [line for line in second.stdout.splitlines() if line.startswith("|")]
